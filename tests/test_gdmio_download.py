import hashlib
import os
import threading

import pytest
import requests

from gdmio.cache import SceneCache
from gdmio.download import RemoteError, RetryPolicy, download
from tests.fakearchive import running_archive

DATA = os.urandom(3 * 1024 * 1024 + 123)
MD5 = hashlib.md5(DATA).hexdigest()
FAST = RetryPolicy(attempts=4, backoff=0.01, timeout=10)


@pytest.fixture(autouse=True)
def _local_archive_allowed(monkeypatch):
    """The fake archive listens on 127.0.0.1, which the guarded client refuses unless
    told (``GDM_ALLOWED_HOSTS``)."""
    monkeypatch.setenv("GDM_ALLOWED_HOSTS", "127.0.0.1")


@pytest.fixture
def archive():
    with running_archive() as a:
        a.files["/S1A_TEST.zip"] = DATA
        yield a


def test_plain_download_is_verified(archive, tmp_path):
    r = download(archive.url + "/S1A_TEST.zip", tmp_path / "s.zip", size=len(DATA),
                 checksum=("md5", MD5), policy=FAST)
    assert (tmp_path / "s.zip").read_bytes() == DATA
    assert r.attempts == 1 and not r.resumed
    assert not (tmp_path / "s.zip.part").exists()


def test_interrupted_download_resumes_with_range(archive, tmp_path):
    cut = 1_000_000
    archive.faults["/S1A_TEST.zip"] = [("drop", cut)]
    r = download(archive.url + "/S1A_TEST.zip", tmp_path / "s.zip", checksum=("md5", MD5),
                 policy=FAST, sleep=lambda s: None)
    assert (tmp_path / "s.zip").read_bytes() == DATA
    assert r.resumed and r.attempts == 2
    assert len(archive.ranges) == 1
    kept = int(archive.ranges[0][6:-1])
    assert cut - 65536 <= kept <= cut  # bytes up to the last complete chunk are kept
    # The resumed transfer sent only what was missing.
    assert archive.bytes_sent["/S1A_TEST.zip"] == len(DATA) + (cut - kept)


def test_corrupt_download_is_detected_and_fetched_again(archive, tmp_path):
    archive.faults["/S1A_TEST.zip"] = [("corrupt",)]
    r = download(archive.url + "/S1A_TEST.zip", tmp_path / "s.zip", checksum=("md5", MD5),
                 policy=FAST, sleep=lambda s: None)
    assert (tmp_path / "s.zip").read_bytes() == DATA
    assert r.attempts == 2
    assert archive.requests["/S1A_TEST.zip"] == 2


def test_wrong_size_is_detected(archive, tmp_path):
    with pytest.raises(RemoteError, match=r"s.zip: giving up after 4 attempts \(corrupt"):
        download(archive.url + "/S1A_TEST.zip", tmp_path / "s.zip", size=len(DATA) - 5,
                 policy=FAST, sleep=lambda s: None)
    assert not (tmp_path / "s.zip").exists()


def test_429_honours_retry_after_and_5xx_backs_off(archive, tmp_path):
    archive.faults["/S1A_TEST.zip"] = [("status", 429, 7), ("status", 503), ("status", 500)]
    waits = []
    r = download(archive.url + "/S1A_TEST.zip", tmp_path / "s.zip", policy=FAST,
                 sleep=waits.append)
    assert r.attempts == 4
    assert waits[0] == pytest.approx(7.0)
    assert waits[1] == pytest.approx(0.02) and waits[2] == pytest.approx(0.04)


@pytest.mark.parametrize("code,word", [(401, "not authorised"), (404, "not found"),
                                       (403, "forbidden")])
def test_permanent_errors_fail_at_once_naming_scene_and_cause(archive, tmp_path, code, word):
    archive.faults["/S1A_TEST.zip"] = [("status", code)]
    with pytest.raises(RemoteError) as err:
        download(archive.url + "/S1A_TEST.zip", tmp_path / "s.zip", label="S1A_TEST",
                 policy=FAST, sleep=lambda s: None)
    assert str(err.value).startswith("S1A_TEST: ") and word in str(err.value)
    assert err.value.status == code
    assert archive.requests["/S1A_TEST.zip"] == 1


def test_timeouts_are_retried_then_reported(archive, tmp_path):
    archive.faults["/S1A_TEST.zip"] = [("delay", 1.5)] * 3
    policy = RetryPolicy(attempts=3, backoff=0.01, timeout=0.5)
    with pytest.raises(RemoteError, match=r"giving up after 3 attempts \(timed out\)"):
        download(archive.url + "/S1A_TEST.zip", tmp_path / "s.zip", policy=policy,
                 sleep=lambda s: None)


def test_authorization_header_never_in_messages(archive, tmp_path):
    archive.faults["/S1A_TEST.zip"] = [("status", 401)]
    with pytest.raises(RemoteError) as err:
        download(archive.url + "/S1A_TEST.zip", tmp_path / "s.zip",
                 headers={"Authorization": "Bearer s3cr3t-token"}, policy=FAST)
    assert "s3cr3t" not in str(err.value)


def test_two_workers_fetching_the_same_scene_download_it_once(archive, tmp_path):
    archive.faults["/S1A_TEST.zip"] = [("delay", 0.5)]
    cache = SceneCache(tmp_path / "cache")
    paths, errors = [], []

    def worker() -> None:
        try:
            session = requests.Session()
            paths.append(cache.get("S1A_TEST", "S1A_TEST.zip", lambda dest: download(
                archive.url + "/S1A_TEST.zip", dest, checksum=("md5", MD5), policy=FAST,
                session=session)))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(set(paths)) == 1 and paths[0].read_bytes() == DATA
    assert archive.requests["/S1A_TEST.zip"] == 1
    assert archive.bytes_sent["/S1A_TEST.zip"] == len(DATA)
