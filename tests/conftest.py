import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

# Tests see several CPU devices, so the sharded paths run here exactly as on a multi-chip host.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
# The tests run on the CPU, also where grokjax[aot] installs libtpu and the CUDA plugin: JAX
# would otherwise try to start them (libtpu locking itself to the first process of the
# multi-process tests); test_aot compiles for them through compile-only devices anyway.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

SERVER_START_SECONDS = 30


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
    except urllib.error.HTTPError:
        return True  # an error status is still an answer
    except OSError:
        return False
    return True


def _serve(command: list[str], log_path) -> tuple[subprocess.Popen, str]:
    """Start a storage server (``command`` ends with its port option) on a free port of
    127.0.0.1; return it and its URL once it answers, or fail the test with the server's log."""
    port = _free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen([*command, str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_SECONDS
    while not _answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            pytest.fail(f"{' '.join(command[1:3])} did not answer on {url} within "
                        f"{SERVER_START_SECONDS}s:\n{log_path.read_text()[-2000:]}")
        time.sleep(0.2)
    return process, url


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory):
    """URL of a Cloud Storage emulator (gcp-storage-emulator, in memory) on 127.0.0.1."""
    pytest.importorskip("gcsfs", reason="gs:// tests need gcsfs: pip install -e '.[dev]'")
    pytest.importorskip("gcp_storage_emulator",
                        reason="gs:// tests need gcp-storage-emulator: pip install -e '.[dev]'")
    process, url = _serve([sys.executable, "-m", "gcp_storage_emulator", "start", "--in-memory",
                           "--quiet", "--host", "127.0.0.1", "--port"],
                          tmp_path_factory.mktemp("gcs") / "server.log")
    yield url
    _stop(process)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """URL of moto's S3 server on 127.0.0.1."""
    pytest.importorskip("s3fs", reason="s3:// tests need s3fs: pip install -e '.[dev]'")
    pytest.importorskip("moto.server", reason="s3:// tests need moto[server]: pip install -e "
                                              "'.[dev]'")
    process, url = _serve([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p"],
                          tmp_path_factory.mktemp("s3") / "server.log")
    yield url
    _stop(process)


def _new_bucket(url: str) -> str:
    import fsspec

    # fsspec reuses filesystems, which read the environment once: start from this test's.
    fsspec.get_filesystem_class(url.split(":")[0]).clear_instance_cache()
    fs, bucket = fsspec.core.url_to_fs(url)
    fs.mkdir(bucket)
    return url


@pytest.fixture
def gcs_bucket(gcs_server, monkeypatch) -> str:
    """A fresh, empty ``gs://`` bucket on the emulator; STORAGE_EMULATOR_HOST points there for
    this test (and its subprocesses)."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server)
    return _new_bucket(f"gs://test-{secrets.token_hex(6)}")


@pytest.fixture
def s3_bucket(s3_server, monkeypatch) -> str:
    """A fresh, empty ``s3://`` bucket on moto; AWS_ENDPOINT_URL and dummy credentials point
    there for this test (and its subprocesses)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return _new_bucket(f"s3://test-{secrets.token_hex(6)}")


BUCKET_FIXTURES = {"gs": "gcs_bucket", "s3": "s3_bucket"}


@pytest.fixture(params=["local", *BUCKET_FIXTURES])
def storage_root(request, tmp_path) -> str:
    """A fresh, empty results root, once per kind: a local directory, a gs:// bucket on the
    emulator and an s3:// bucket on moto."""
    if request.param == "local":
        return str(tmp_path / "results")
    return request.getfixturevalue(BUCKET_FIXTURES[request.param])
