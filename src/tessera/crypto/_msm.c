/* Multi-scalar multiplication over secp256k1 through libsecp256k1's own ecmult_multi_var.
 *
 * Tessera's glue, compiled against the vendored library sources in
 * third_party/secp256k1 (see its README): this translation unit includes the
 * library's internal implementation headers, so the field, group, scalar and
 * ecmult code (Strauss below 88 points, Pippenger above, with the GLV
 * endomorphism and the precomputed G tables) is the library's, not ours.
 *
 * Python interface (module tessera.crypto._msm):
 *
 *   msm(points: bytes, scalars: bytes, g_scalar: bytes | None = None) -> bytes
 *
 * `points` is n concatenated SEC1 encodings, each compressed (33 bytes) or
 * uncompressed (65 bytes, no square root to take), or 33 zero bytes for the
 * identity; `scalars` n concatenated 32-byte big-endian scalars below the
 * group order, `g_scalar` an optional coefficient of the generator G. Returns
 * the 33-byte compressed sum (33 zero bytes for the identity). Variable time:
 * for public inputs only. The GIL is released while the library computes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Configuration of the library build (what ./configure would decide on this platform). */
#ifndef ECMULT_WINDOW_SIZE
#define ECMULT_WINDOW_SIZE 15
#endif
#ifndef USE_EXTERNAL_DEFAULT_CALLBACKS
#define USE_EXTERNAL_DEFAULT_CALLBACKS 1
#endif

#include "secp256k1.h"
#include "util.h"
#include "int128_impl.h"
#include "field_impl.h"
#include "scalar_impl.h"
#include "group_impl.h"
#include "scratch_impl.h"
#include "ecmult_impl.h"

/* The library's default callbacks abort; ours record the message instead. */
void secp256k1_default_illegal_callback_fn(const char *str, void *data) {
    (void)data;
    (void)str;
}
void secp256k1_default_error_callback_fn(const char *str, void *data) {
    (void)data;
    (void)str;
}

static void tessera_record_error(const char *text, void *data) {
    *(const char **)data = text;
}

#define POINT_BYTES 33
#define SCALAR_BYTES 32
#define UNCOMPRESSED_BYTES 65

typedef struct {
    const secp256k1_ge *points;
    const secp256k1_scalar *scalars;
} tessera_msm_data;

static int tessera_msm_callback(secp256k1_scalar *sc, secp256k1_ge *pt, size_t idx, void *data) {
    const tessera_msm_data *d = (const tessera_msm_data *)data;
    *sc = d->scalars[idx];
    *pt = d->points[idx];
    return 1;
}

static long tessera_parse_point(secp256k1_ge *out, int *is_point, const unsigned char *in,
                                size_t avail) {
    /* Parses one encoding at `in`; returns the bytes it took, or -1 if it is not valid.
     * 0x02/0x03: SEC1 compressed (33 bytes); 0x04: SEC1 uncompressed (65 bytes);
     * 33 zero bytes: the identity (*is_point = 0). */
    secp256k1_fe x, y;
    size_t i;
    *is_point = 0;
    if (avail < POINT_BYTES) {
        return -1;
    }
    if (in[0] == 0x00) {
        for (i = 1; i < POINT_BYTES; i++) {
            if (in[i] != 0) {
                return -1;
            }
        }
        return POINT_BYTES;
    }
    if (in[0] == 0x02 || in[0] == 0x03) {
        if (!secp256k1_fe_set_b32(&x, in + 1)) {
            return -1; /* x >= p */
        }
        if (!secp256k1_ge_set_xo_var(out, &x, in[0] == 0x03)) {
            return -1; /* x^3 + 7 is not a square */
        }
        *is_point = 1;
        return POINT_BYTES;
    }
    if (in[0] == 0x04) {
        if (avail < UNCOMPRESSED_BYTES) {
            return -1;
        }
        if (!secp256k1_fe_set_b32(&x, in + 1) || !secp256k1_fe_set_b32(&y, in + 33)) {
            return -1; /* a coordinate >= p */
        }
        secp256k1_ge_set_xy(out, &x, &y);
        if (!secp256k1_ge_is_valid_var(out)) {
            return -1; /* not on the curve */
        }
        *is_point = 1;
        return UNCOMPRESSED_BYTES;
    }
    return -1;
}

/* Scratch space for n points: what Strauss (n < 88) or Pippenger needs in one batch,
 * with the library's per-object alignment and some slack. */
static size_t tessera_scratch_size(size_t n) {
    size_t size;
    if (n < ECMULT_PIPPENGER_THRESHOLD) {
        size = secp256k1_strauss_scratch_size(n) + STRAUSS_SCRATCH_OBJECTS * ALIGNMENT;
    } else {
        int window = secp256k1_pippenger_bucket_window(n);
        size = secp256k1_pippenger_scratch_size(n, window) + PIPPENGER_SCRATCH_OBJECTS * ALIGNMENT;
    }
    return size + size / 8 + 4096;
}

static PyObject *tessera_msm(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"points", "scalars", "g_scalar", NULL};
    Py_buffer pbuf, sbuf, gbuf;
    PyObject *g_obj = Py_None;
    secp256k1_ge *points = NULL;
    secp256k1_scalar *scalars = NULL;
    secp256k1_scalar g_sc;
    int have_g = 0;
    size_t n, used = 0, i, pos = 0;
    secp256k1_scratch *scratch = NULL;
    const char *lib_error = NULL;
    secp256k1_callback cb;
    secp256k1_gej rj;
    secp256k1_ge r;
    unsigned char out[POINT_BYTES];
    tessera_msm_data data;
    int ok;
    (void)self;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*y*|O", keywords, &pbuf, &sbuf, &g_obj)) {
        return NULL;
    }
    if (sbuf.len % SCALAR_BYTES != 0) {
        PyErr_Format(PyExc_ValueError, "msm: scalars must be a multiple of %d bytes, got %zd",
                     SCALAR_BYTES, sbuf.len);
        goto fail;
    }
    n = (size_t)sbuf.len / SCALAR_BYTES;
    if (g_obj != Py_None) {
        int overflow = 0;
        if (PyObject_GetBuffer(g_obj, &gbuf, PyBUF_SIMPLE) < 0) {
            goto fail;
        }
        if (gbuf.len != SCALAR_BYTES) {
            PyBuffer_Release(&gbuf);
            PyErr_Format(PyExc_ValueError, "msm: g_scalar must be %d bytes", SCALAR_BYTES);
            goto fail;
        }
        secp256k1_scalar_set_b32(&g_sc, (const unsigned char *)gbuf.buf, &overflow);
        PyBuffer_Release(&gbuf);
        if (overflow) {
            PyErr_SetString(PyExc_ValueError, "msm: g_scalar is not below the group order");
            goto fail;
        }
        have_g = !secp256k1_scalar_is_zero(&g_sc);
    }
    if (n > 0) {
        points = (secp256k1_ge *)PyMem_Malloc(n * sizeof(secp256k1_ge));
        scalars = (secp256k1_scalar *)PyMem_Malloc(n * sizeof(secp256k1_scalar));
        if (points == NULL || scalars == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    for (i = 0; i < n; i++) {
        const unsigned char *sin = (const unsigned char *)sbuf.buf + i * SCALAR_BYTES;
        int overflow = 0, is_point = 0;
        long took;
        secp256k1_scalar_set_b32(&scalars[used], sin, &overflow);
        if (overflow) {
            PyErr_Format(PyExc_ValueError, "msm: scalar %zu is not below the group order", i);
            goto fail;
        }
        took = tessera_parse_point(&points[used], &is_point, (const unsigned char *)pbuf.buf + pos,
                                   (size_t)pbuf.len - pos);
        if (took < 0) {
            PyErr_Format(PyExc_ValueError,
                         "msm: point %zu is not a valid encoding (SEC1 compressed or uncompressed"
                         " on secp256k1, or 33 zero bytes for the identity)",
                         i);
            goto fail;
        }
        pos += (size_t)took;
        if (is_point && !secp256k1_scalar_is_zero(&scalars[used])) {
            used++; /* identities and zero coefficients contribute nothing */
        }
    }
    if (pos != (size_t)pbuf.len) {
        PyErr_Format(PyExc_ValueError, "msm: %zu scalars but %zd bytes of points left over", n,
                     (Py_ssize_t)((size_t)pbuf.len - pos));
        goto fail;
    }

    cb.fn = tessera_record_error;
    cb.data = &lib_error;
    ok = 1;
    Py_BEGIN_ALLOW_THREADS
    if (used > 0) {
        scratch = secp256k1_scratch_create(&cb, tessera_scratch_size(used));
    }
    if (used > 0 && scratch == NULL) {
        ok = 0;
    } else {
        data.points = points;
        data.scalars = scalars;
        ok = secp256k1_ecmult_multi_var(&cb, scratch, &rj, have_g ? &g_sc : NULL,
                                        tessera_msm_callback, &data, used);
    }
    if (scratch != NULL) {
        secp256k1_scratch_destroy(&cb, scratch);
    }
    Py_END_ALLOW_THREADS

    if (!ok || lib_error != NULL) {
        PyErr_Format(PyExc_MemoryError, "msm: libsecp256k1 failed (%s)",
                     lib_error != NULL ? lib_error : "scratch space");
        goto fail;
    }
    if (secp256k1_gej_is_infinity(&rj)) {
        memset(out, 0, POINT_BYTES);
    } else {
        secp256k1_ge_set_gej_var(&r, &rj);
        secp256k1_fe_normalize_var(&r.x);
        secp256k1_fe_normalize_var(&r.y);
        secp256k1_fe_get_b32(out + 1, &r.x);
        out[0] = secp256k1_fe_is_odd(&r.y) ? 0x03 : 0x02;
    }
    PyMem_Free(points);
    PyMem_Free(scalars);
    PyBuffer_Release(&pbuf);
    PyBuffer_Release(&sbuf);
    return PyBytes_FromStringAndSize((const char *)out, POINT_BYTES);

fail:
    PyMem_Free(points);
    PyMem_Free(scalars);
    PyBuffer_Release(&pbuf);
    PyBuffer_Release(&sbuf);
    return NULL;
}

static PyMethodDef tessera_msm_methods[] = {
    {"msm", (PyCFunction)(void (*)(void))tessera_msm, METH_VARARGS | METH_KEYWORDS,
     "msm(points, scalars, g_scalar=None) -> 33-byte compressed sum (variable time)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef tessera_msm_module = {
    PyModuleDef_HEAD_INIT, "_msm",
    "libsecp256k1's ecmult_multi (Strauss/Pippenger) for Tessera's verifiers.", -1,
    tessera_msm_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__msm(void) {
    PyObject *m = PyModule_Create(&tessera_msm_module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddStringConstant(m, "LIBSECP256K1_VERSION", "0.2.0") < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
