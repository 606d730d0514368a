/*
 * matting_deploy.h: the C calling convention of matting-deploy runners.
 *
 * The functions live in a Python process (matting_deploy.runtimes.capi builds them as ctypes
 * function pointers) and are handed to C as one `md_api` struct: from Python with
 * `matting_deploy.runtimes.capi.api()` (pass `ctypes.byref(api)` to your C function), or, when C
 * embeds Python, as the address `matting_deploy.runtimes.capi.api_address()`.
 *
 * Conventions
 *   - Plain types only. Buffers are caller-owned, contiguous, float32, NCHW:
 *       src [n, 3, h, w] RGB in [0, 1];  pha [n, 1, h, w];  fgr [n, 3, h, w] (RVM; may be NULL).
 *   - Every function returns a status (MD_OK == 0) and never lets an error escape in any other
 *     way. After a non-zero status, api->last_error() describes it (one line, UTF-8, valid until
 *     the next call through the api on the same thread; "" after a successful call).
 *   - Recurrent models (RVM) keep their state inside the handle between run calls; reset
 *     sets it back to zeros. A handle must not be used by two threads at once.
 *   - Models with extra inputs (Background Matting v1: "src" [n,3,h,w], "bgr" [n,3,h,w] the clean
 *     background plate, "seg" [n,1,h,w] the soft person mask, all in [0, 1]; outputs pha and
 *     fgr [n,3,h,w]) run through run_ex; run on them returns MD_ERR_ARGUMENT.
 *
 * ABI history: 1 = open, run, reset, close, last_error, shape. 2 = the same members at the same
 * offsets plus run_ex at the end (a caller built against 1 may accept abi_version >= 1).
 */
#ifndef MATTING_DEPLOY_H
#define MATTING_DEPLOY_H

#ifdef __cplusplus
extern "C" {
#endif

#define MD_ABI_VERSION 2

enum md_status {
    MD_OK = 0,
    MD_ERR_ARGUMENT = -1, /* NULL pointer, n/h/w not what the model takes, bad UTF-8 */
    MD_ERR_HANDLE = -2,   /* the handle is not open (never opened, or closed) */
    MD_ERR_BUNDLE = -3,   /* bundle, artifact or backend cannot be opened here */
    MD_ERR_RUNTIME = -4   /* inference failed, or an unexpected internal error */
};

/* Open `artifact` of the bundle folder `bundle` on `backend`. On MD_OK, *handle is set (never NULL).
 *   Artifacts: "fp32", "fp16", "int8" (TensorRT's Q/DQ layout), "int8-cpu" (onnxruntime CPU layout), "bf16" (OpenVINO only).
 *   Backends: "cpu", "cuda", "ort-trt" (onnxruntime), "tensorrt" (model.<artifact>.engine), "openvino" (OpenVINO on the CPU; "openvino:GPU" etc. for another OpenVINO device).
 */
typedef int (*md_open_fn)(const char *bundle, const char *artifact, const char *backend,
                          void **handle);

/* Run one frame batch. n, h, w must match shape() (dimensions reported as -1 accept any size).
 * Writes pha; writes fgr when the model has it (fgr_channels == 3) and fgr is not NULL. */
typedef int (*md_run_fn)(void *handle, const float *src, int n, int h, int w, float *pha,
                         float *fgr);

/* Recurrent state back to zeros (no-op for stateless models). */
typedef int (*md_reset_fn)(void *handle);

/* Release the handle; it is invalid afterwards. */
typedef int (*md_close_fn)(void *handle);

/* Message of the last failed call on this thread ("" if the last call succeeded). */
typedef const char *(*md_last_error_fn)(void);

/* The input the handle takes (n, h, w; -1 = any) and fgr's channel count (3, or 0 if none).
 * Any pointer may be NULL. */
typedef int (*md_shape_fn)(void *handle, int *n, int *h, int *w, int *fgr_channels);

/* Run one frame batch of a model with several inputs: `inputs[i]` is the caller's float32 NCHW
 * buffer of the input named `names[i]` ([n, C, h, w], C = 3 for "src"/"bgr", 1 for "seg").
 * `count` must equal the model's number of caller-fed inputs, each named once, in any order
 * (recurrent states stay inside the handle; works for single-input models with count 1, "src").
 * n, h, w, pha and fgr as in run. Example (BGM):
 *     const char *names[] = {"src", "bgr", "seg"};
 *     const float *inputs[] = {src, bgr, seg};
 *     rc = api->run_ex(handle, 3, names, inputs, 1, 512, 512, pha, fgr);             */
typedef int (*md_run_ex_fn)(void *handle, int count, const char *const *names,
                            const float *const *inputs, int n, int h, int w, float *pha,
                            float *fgr);

typedef struct md_api {
    int abi_version; /* MD_ABI_VERSION */
    md_open_fn open;
    md_run_fn run;
    md_reset_fn reset;
    md_close_fn close;
    md_last_error_fn last_error;
    md_shape_fn shape;
    md_run_ex_fn run_ex; /* ABI 2 */
} md_api;

#ifdef __cplusplus
}
#endif

#endif /* MATTING_DEPLOY_H */
