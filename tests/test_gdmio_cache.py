import os
import subprocess
import sys
import textwrap
import time

import pytest

from gdmio.cache import SceneCache


def _writer(payload: bytes):
    def fetch(dest):
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.write_bytes(payload)
        tmp.replace(dest)
    return fetch


def test_get_fetches_once_and_reuses(tmp_path):
    cache = SceneCache(tmp_path)
    calls = []

    def fetch(dest):
        calls.append(dest)
        _writer(b"x" * 100)(dest)

    p1 = cache.get("S2A_T31TGL_20230401", "B04.tif", fetch)
    p2 = cache.get("S2A_T31TGL_20230401", "B04.tif", fetch)
    assert p1 == p2 and p1.read_bytes() == b"x" * 100 and len(calls) == 1
    # Content addressing: the folder depends on the key only.
    assert SceneCache(tmp_path).folder("S2A_T31TGL_20230401") == p1.parent


def test_invalid_entry_is_fetched_again(tmp_path):
    cache = SceneCache(tmp_path)
    cache.get("k", "f.bin", _writer(b"short"))
    p = cache.get("k", "f.bin", _writer(b"complete!!"), valid=lambda p: p.stat().st_size == 10)
    assert p.read_bytes() == b"complete!!"


def test_lru_eviction_skips_entries_in_use(tmp_path):
    cache = SceneCache(tmp_path)
    for i, key in enumerate(["a", "b", "c", "d"]):
        cache.get(key, "f.bin", _writer(bytes(1000)))
        os.utime(cache.folder(key).parent / f"{cache.folder(key).name}.used",
                 (1000 + i, 1000 + i))
    with cache.use("a"):  # oldest, but in use
        removed = cache.evict(max_bytes=2500)
    assert removed == ["b", "c"]
    assert cache.folder("a").exists() and cache.folder("d").exists()
    assert cache.size() == 2000 + len(b"a") + len(b"d")  # payloads + .key files


def test_bad_names_are_refused(tmp_path):
    cache = SceneCache(tmp_path)
    for bad in ("../x", "a/b", "", ".."):
        with pytest.raises(ValueError):
            cache.get("k", bad, _writer(b""))


def test_two_processes_fetch_the_same_scene_once(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(os.getcwd())!r})
        from gdmio.cache import SceneCache
        def fetch(dest):
            with open({str(tmp_path / 'fetches.log')!r}, 'a') as log:
                log.write('fetch\\n')
            time.sleep(0.5)
            tmp = dest.with_name(dest.name + '.tmp'); tmp.write_bytes(b'scene'); tmp.replace(dest)
        p = SceneCache({str(tmp_path / 'cache')!r}).get('S1A_SCENE', 's.zip', fetch)
        print(p.read_bytes().decode())
    """)
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert outs == ["scene"] * 3
    assert (tmp_path / "fetches.log").read_text().count("fetch") == 1
    assert time.perf_counter() - t0 < 30
