"""The C surface: a C caller compiled here drives the runner through the md_api pointers."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from matting_deploy.bundle import ARTIFACTS, Bundle
from matting_deploy.runtimes import BACKENDS, capi
from matting_deploy.runtimes.onnxruntime_runner import OrtRunner
from tests.fixtures import H, W, frames, make_runtime_bundle

DRIVER = r"""
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include "matting_deploy.h"

size_t api_size(void) { return sizeof(md_api); }
size_t api_offset(int i) {
    size_t o[] = {offsetof(md_api, open), offsetof(md_api, run), offsetof(md_api, reset),
                  offsetof(md_api, close), offsetof(md_api, last_error), offsetof(md_api, shape)};
    return o[i];
}

/* Open, run `count` frames (state carried), reset, run frame 0 again into slot `count`, close.
   Returns 0 or the failing status; err gets "step: status message". */
int drive(const md_api *api, const char *bundle, const char *artifact, const char *backend,
          const float *src, int count, float *pha, float *fgr, int *shape, char *err, int errlen)
{
    void *h = NULL;
    int n, hh, w, fc, rc;
    if (api->abi_version != MD_ABI_VERSION) { snprintf(err, errlen, "abi"); return -100; }
    rc = api->open(bundle, artifact, backend, &h);
    if (rc != MD_OK) { snprintf(err, errlen, "open: %d %s", rc, api->last_error()); return rc; }
    rc = api->shape(h, &n, &hh, &w, &fc);
    if (rc != MD_OK) { snprintf(err, errlen, "shape: %d %s", rc, api->last_error()); return rc; }
    shape[0] = n; shape[1] = hh; shape[2] = w; shape[3] = fc;
    size_t in = (size_t)n * 3 * hh * w, ap = (size_t)n * hh * w, fp = (size_t)n * fc * hh * w;
    for (int t = 0; t <= count; t++) {
        if (t == count && (rc = api->reset(h)) != MD_OK) break;
        const float *frame = src + (t == count ? 0 : t) * in;
        rc = api->run(h, frame, n, hh, w, pha + t * ap, fc ? fgr + t * fp : NULL);
        if (rc != MD_OK) break;
    }
    if (rc != MD_OK) { snprintf(err, errlen, "run: %d %s", rc, api->last_error()); return rc; }
    if (strlen(api->last_error()) != 0) { snprintf(err, errlen, "stale error"); return -101; }
    return api->close(h);
}

/* Misuse: every call must come back as a status code with a message, never a crash. */
int misuse(const md_api *api, const char *bundle, int *codes, char *msgs, int msglen)
{
    void *h = NULL;
    float buf[16] = {0};
    codes[0] = api->open("/no/such/bundle", "fp32", "cpu", &h);
    snprintf(msgs + 0 * msglen, msglen, "%s", api->last_error());
    codes[1] = api->run((void *)12345, buf, 1, 4, 4, buf, NULL);
    snprintf(msgs + 1 * msglen, msglen, "%s", api->last_error());
    codes[2] = api->open(bundle, "fp32", "cpu", &h);
    codes[3] = api->run(h, buf, 1, 2, 2, buf, NULL);            /* wrong h, w */
    snprintf(msgs + 3 * msglen, msglen, "%s", api->last_error());
    codes[4] = api->run(h, NULL, 1, 2, 2, buf, NULL);           /* NULL src */
    snprintf(msgs + 4 * msglen, msglen, "%s", api->last_error());
    codes[5] = api->open(bundle, "fp32", "no-such-backend", NULL); /* NULL handle pointer */
    codes[6] = api->open(bundle, "nope", "cpu", &h);            /* h still the open handle */
    snprintf(msgs + 6 * msglen, msglen, "%s", api->last_error());
    codes[7] = api->close(h);
    codes[8] = api->close(h);                                    /* closed twice */
    codes[9] = api->reset(h);
    snprintf(msgs + 9 * msglen, msglen, "%s", api->last_error());
    return 0;
}
"""


README = Path(__file__).resolve().parents[1] / "README.md"


def _cc() -> str:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler (cc) on this machine")
    return cc


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    cc = _cc()
    work = tmp_path_factory.mktemp("cdriver")
    (work / "drive.c").write_text(DRIVER)
    include = capi.header_path().parent
    lib = work / "libdrive.so"
    subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-shared", "-fPIC", "-O1", "-I",
                    str(include), str(work / "drive.c"), "-o", str(lib)], check=True)
    dll = ctypes.CDLL(str(lib))
    dll.api_size.restype = ctypes.c_size_t
    dll.api_offset.restype = ctypes.c_size_t
    dll.api_offset.argtypes = [ctypes.c_int]
    dll.drive.restype = ctypes.c_int
    dll.misuse.restype = ctypes.c_int
    return dll


def test_header_struct_matches_ctypes(driver):
    assert driver.api_size() == ctypes.sizeof(capi.MdApi)
    names = ["open", "run", "reset", "close", "last_error", "shape"]
    assert [driver.api_offset(i) for i in range(6)] == [getattr(capi.MdApi, n).offset
                                                         for n in names]


def _drive(driver, bundle, seq, count, fgr_channels):
    src = np.ascontiguousarray(np.concatenate(seq), dtype=np.float32)
    pha = np.full((count + 1, 1, H, W), -1.0, np.float32)
    fgr = np.full((count + 1, max(fgr_channels, 1), H, W), -1.0, np.float32)
    shape = (ctypes.c_int * 4)()
    err = ctypes.create_string_buffer(512)
    f32 = ctypes.POINTER(ctypes.c_float)
    rc = driver.drive(
        ctypes.byref(capi.api()), str(bundle).encode(), b"fp32", b"cpu",
        src.ctypes.data_as(f32), ctypes.c_int(count), pha.ctypes.data_as(f32),
        fgr.ctypes.data_as(f32), shape, err, ctypes.c_int(len(err)),
    )
    assert rc == 0, err.value.decode()
    return pha, fgr, list(shape)


def test_c_caller_rvm_matches_python(driver, tmp_path):
    bundle = make_runtime_bundle(tmp_path / "rvm", "rvm")
    seq = frames(4)
    pha, fgr, shape = _drive(driver, bundle, seq, 4, 3)
    assert shape == [1, H, W, 3]
    ref = OrtRunner.from_bundle(Bundle.open(bundle))
    for t, frame in enumerate(seq):
        out = ref.run(frame)
        np.testing.assert_allclose(pha[t], out["pha"][0], rtol=0, atol=1e-6)
        np.testing.assert_allclose(fgr[t], out["fgr"][0], rtol=0, atol=1e-6)
    ref.reset()
    first = ref.run(seq[0])
    np.testing.assert_allclose(pha[4], first["pha"][0], rtol=0, atol=1e-6)  # md_reset worked
    assert np.abs(pha[3] - pha[0]).max() > 1e-3  # frames differ: the comparison has teeth
    assert capi.open_handles() == 0


def test_c_caller_modnet_without_fgr(driver, tmp_path):
    bundle = make_runtime_bundle(tmp_path / "modnet", "modnet")
    seq = frames(2)
    pha, fgr, shape = _drive(driver, bundle, seq, 2, 0)
    assert shape == [1, H, W, 0]
    assert (fgr == -1.0).all()  # fgr NULL was passed and nothing was written
    ref = OrtRunner.from_bundle(Bundle.open(bundle))
    np.testing.assert_allclose(pha[1], ref.run(seq[1])["pha"][0], rtol=0, atol=1e-6)


def test_c_caller_misuse_returns_status_codes(driver, tmp_path):
    bundle = make_runtime_bundle(tmp_path / "modnet", "modnet", height=4, width=4)
    codes = (ctypes.c_int * 10)()
    width = 256
    msgs = ctypes.create_string_buffer(10 * width)
    assert driver.misuse(ctypes.byref(capi.api()), str(bundle).encode(), codes, msgs, width) == 0
    text = [msgs.raw[i * width:(i + 1) * width].split(b"\0")[0].decode() for i in range(10)]
    assert list(codes) == [
        capi.MD_ERR_BUNDLE, capi.MD_ERR_HANDLE, capi.MD_OK, capi.MD_ERR_ARGUMENT,
        capi.MD_ERR_ARGUMENT, capi.MD_ERR_ARGUMENT, capi.MD_ERR_BUNDLE, capi.MD_OK,
        capi.MD_ERR_HANDLE, capi.MD_ERR_HANDLE,
    ]
    assert "/no/such/bundle" in text[0]
    assert "not open" in text[1]
    assert "h=2" in text[3] and "h=4" in text[3]
    assert "src is NULL" in text[4]
    assert "'nope'" in text[6]
    assert "not open" in text[9]
    assert capi.open_handles() == 0


def test_python_side_of_the_pointers(tmp_path):
    """The same pointers called from Python: errors come back as codes, never exceptions."""
    bundle = make_runtime_bundle(tmp_path / "rvm", "rvm")
    handle = ctypes.c_void_p()
    assert capi.md_open(str(bundle).encode(), b"fp32", b"cpu", ctypes.byref(handle)) == 0
    assert handle.value
    src = frames(1)[0]
    pha = np.zeros((1, 1, H, W), np.float32)
    f32 = ctypes.POINTER(ctypes.c_float)
    rc = capi.md_run(handle, src.ctypes.data_as(f32), 1, H, W, pha.ctypes.data_as(f32), None)
    assert rc == 0 and capi.last_error() == ""
    assert pha.std() > 0
    bad = capi.md_run(handle, src.ctypes.data_as(f32), 2, H, W, pha.ctypes.data_as(f32), None)
    assert bad == capi.MD_ERR_ARGUMENT and "n=2" in capi.last_error()
    assert capi.md_close(handle) == 0
    assert set(capi.function_addresses()) == set(capi.FUNCTIONS)
    assert all(capi.function_addresses().values())
    assert capi.api_address() == ctypes.addressof(capi.api())


def test_header_lists_what_the_code_accepts():
    """The header's artifact and backend names, ABI version and status codes are the code's."""
    text = capi.header_path().read_text()
    artifacts = re.search(r"Artifacts: (.*?)\n \*   Backends:", text, re.S).group(1)
    backends = re.search(r"Backends: (.*?)\n", text).group(1)
    assert re.findall(r'"([\w-]+)"', artifacts) == list(ARTIFACTS)
    assert re.findall(r'"([\w-]+)"', backends) == list(BACKENDS)
    assert f"#define MD_ABI_VERSION {capi.ABI_VERSION}" in text
    for name in ("MD_OK", "MD_ERR_ARGUMENT", "MD_ERR_HANDLE", "MD_ERR_BUNDLE", "MD_ERR_RUNTIME"):
        assert re.search(rf"{name} = {getattr(capi, name)}\b", text), name


def _readme_embed_program() -> str:
    blocks = re.findall(r"```c\n(.*?)```", README.read_text(), re.S)
    (program,) = [b for b in blocks if "api_address" in b and "int main" in b]
    return program


def test_c_program_embedding_python_calls_through_api_address(tmp_path):
    """The README's embedding example, compiled as it stands: a C program starts Python, takes the
    md_api from capi.api_address() and runs a bundle; its alpha is the Python runner's."""
    cc = _cc()
    include = Path(sysconfig.get_paths()["include"])
    libdir, library = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY") or ""
    if not (include / "Python.h").is_file():
        pytest.skip(f"no Python.h in {include} (the Python development headers) to embed Python")
    if not (libdir and library.endswith(".so") and (Path(libdir) / library).is_file()):
        pytest.skip("this Python has no shared libpython to embed")
    (tmp_path / "embed.c").write_text(_readme_embed_program())
    exe = tmp_path / "embed"
    version = sysconfig.get_config_var("LDVERSION") or sysconfig.get_config_var("VERSION")
    subprocess.run([cc, "-Wall", "-Werror", "-I", str(include), "-I", str(capi.header_path().parent),
                    str(tmp_path / "embed.c"), "-L", libdir, f"-lpython{version}", f"-Wl,-rpath,{libdir}",
                    "-lm", "-o", str(exe)], check=True)
    bundle = make_runtime_bundle(tmp_path / "rvm", "rvm")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    res = subprocess.run([str(exe), str(bundle), str(tmp_path / "pha.f32")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    src = (np.arange(3 * H * W) % 251 / 250.0).astype(np.float32).reshape(1, 3, H, W)
    want = OrtRunner.from_bundle(Bundle.open(bundle)).run(src)["pha"]
    got = np.fromfile(tmp_path / "pha.f32", np.float32).reshape(want.shape)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert want.std() > 1e-3  # a non-constant matte: the comparison has teeth
    res = subprocess.run([str(exe), str(tmp_path / "missing")], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 1 and "missing" in res.stderr  # md_last_error's line, printed by C
