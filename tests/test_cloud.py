"""Results on Cloud Storage and S3 (real local servers, see conftest.py): the command of the
README, killed once and rerun, gives the tables of a local run, which summary, fit, plot and
report read in place; bad destinations exit 2 first."""

import subprocess
from pathlib import Path

import pytest
from test_scale import (
    SUBPROCESS_TIMEOUT,
    assert_same_tables,
    check,
    cli_command,
    kill_when,
    subprocess_env,
)

from grokjax import cli, outdir, storage

OVERRIDES = ("--set", "K=64", "--grid", "seed=1:4")
NAME = "wd+K-64+seed-range1,4"  # the overridden sweep's own directory
WD_SWEEP = str(Path(__file__).parents[1] / "sweeps" / "wd.toml")


def sweep_command(results_root: str) -> list[str]:
    return cli_command("sweep", WD_SWEEP, *OVERRIDES, "--results", results_root, "--no-progress")


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("local")
    check(subprocess.run(sweep_command(str(root)), capture_output=True, text=True,
                         timeout=SUBPROCESS_TIMEOUT, env=subprocess_env()))
    return root / NAME


@pytest.mark.parametrize("bucket_fixture", ["gcs_bucket", "s3_bucket"])
def test_a_killed_sweep_on_a_bucket_resumes_to_the_tables_of_a_local_run(
        request, bucket_fixture, local_run):
    bucket = request.getfixturevalue(bucket_fixture)
    out = storage.Location(bucket) / NAME
    kill_when(sweep_command(bucket), subprocess_env(), lambda: outdir.part_names(out, "runs"),
              poll_seconds=0.05)
    assert not storage.exists(out / outdir.MANIFEST_FILE)
    stdout = check(subprocess.run(sweep_command(bucket), capture_output=True, text=True,
                                  timeout=SUBPROCESS_TIMEOUT, env=subprocess_env()))
    assert "skipped (already done) 0;" not in stdout  # it resumed
    assert_same_tables(out, local_run)
    assert storage.exists(out / outdir.MANIFEST_FILE)
    assert not storage.exists(out / outdir.TMP_DIR)
    assert outdir.read_metadata(out)["sweep_toml"] == (local_run / outdir.SWEEP_FILE).read_text()
    # Every command that reads results reads the bucket as it reads a local directory.
    for command in ("summary", "fit", "plot", "report"):
        bootstrap = [] if command == "summary" else ["--bootstrap", "20"]
        assert cli.main([command, str(out), *bootstrap]) == 0, command
    assert storage.exists(out / outdir.FIGURES_DIR / "wd_speed.png")
    report = storage.read_text(out / outdir.REPORT_DIR / "report.md")
    assert "![wd speed](wd_speed.png)" in report and "## Weight decay and grokking" in report
    assert storage.exists(out / outdir.REPORT_DIR / "wd_speed.png")


def test_a_bucket_that_does_not_exist_is_refused_before_any_compute(s3_bucket, capsys):
    missing = s3_bucket.replace("s3://test-", "s3://missing-")
    assert cli.main(["sweep", WD_SWEEP, *OVERRIDES, "--results", missing]) == 2
    err = capsys.readouterr().err
    assert "cannot write to" in err and "Traceback" not in err
    assert "compiling" not in err
