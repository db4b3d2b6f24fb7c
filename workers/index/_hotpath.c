/* The per-query work of a shard's single-query search, compiled.
 *
 * A cheap FAISS query (100k IVF-Flat, nprobe 1-4) takes 45-80 us; the Python around it
 * (the read lock, the query check, the grouping of hits by product) cost ~14 us of that,
 * most of it interpreter overhead run with caches the scan has just flushed. These three
 * pieces do the same work here; workers/index/native.py picks them or their Python twins
 * (rwlock.PyRWLock, vectors.unit_queries, grouping.top_products_py), which stay the
 * reference the tests compare against.
 *
 * - RWLock: readers share, a writer is exclusive, waiting writers block new readers;
 *   every wait releases the GIL.
 * - unit_query: one query row checked (shape, finite) and scaled to unit length.
 * - first_products: the first k distinct products of one ranked row of hits.
 */
#define PY_SSIZE_T_CLEAN
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <Python.h>
#include <numpy/arrayobject.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------- arrays */

/* An aligned, C-contiguous array in native byte order with `n` items, or NULL. */
static PyArrayObject *
plain_array(PyObject *obj, npy_intp n)
{
    if (!PyArray_Check(obj))
        return NULL;
    PyArrayObject *a = (PyArrayObject *)obj;
    if (!PyArray_ISCARRAY_RO(a) || !PyArray_ISNOTSWAPPED(a) || PyArray_SIZE(a) != n)
        return NULL;
    return a;
}

/* The row (1, d) or vector (d,) shapes a single query may come in. */
static int
one_row_of(PyArrayObject *a, npy_intp dim)
{
    npy_intp *shape = PyArray_DIMS(a);
    return (PyArray_NDIM(a) == 1 && shape[0] == dim) ||
           (PyArray_NDIM(a) == 2 && shape[0] == 1 && shape[1] == dim);
}

/* The sum of squares with eight partial sums: one running sum is a chain of dependent
 * additions, 4x slower on 512 components. */
#define SQUARES(x, dim, out)                                        \
    do {                                                            \
        double part[8] = {0};                                       \
        npy_intp i = 0;                                             \
        for (; i + 8 <= (dim); i += 8)                              \
            for (int j = 0; j < 8; j++)                             \
                part[j] += (double)(x)[i + j] * (double)(x)[i + j]; \
        for (; i < (dim); i++)                                      \
            part[0] += (double)(x)[i] * (double)(x)[i];             \
        (out) = ((part[0] + part[1]) + (part[2] + part[3])) +       \
                ((part[4] + part[5]) + (part[6] + part[7]));        \
    } while (0)

/* ---------------------------------------------------------------- unit_query */

PyDoc_STRVAR(unit_query_doc,
"unit_query(query, dim) -> ndarray | None\n\n"
"`query` (a float32 or float64 array of shape (dim,) or (1, dim)) scaled to unit length,\n"
"as a new (1, dim) float32 array; None when it is anything else, has NaN or infinity, or\n"
"is zero: the caller's general check then says why.");

static PyObject *
unit_query(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    npy_intp dim;
    if (nargs != 2 || (dim = PyLong_AsSsize_t(args[1])) < 1) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "unit_query(query, dim) with dim >= 1");
        return NULL;
    }
    PyArrayObject *q = plain_array(args[0], dim);
    int type = q ? PyArray_TYPE(q) : -1;
    if (!q || !one_row_of(q, dim) || (type != NPY_FLOAT32 && type != NPY_FLOAT64))
        Py_RETURN_NONE;
    double square;
    if (type == NPY_FLOAT32)
        SQUARES((const float *)PyArray_DATA(q), dim, square);
    else
        SQUARES((const double *)PyArray_DATA(q), dim, square);
    /* finite only if every component is: zero, NaN, infinity and overflow all fail */
    if (!(square > 0.0 && isfinite(square)))
        Py_RETURN_NONE;
    npy_intp shape[2] = {1, dim};
    PyObject *out = PyArray_SimpleNew(2, shape, NPY_FLOAT32);
    if (!out)
        return NULL;
    float *y = PyArray_DATA((PyArrayObject *)out);
    if (type == NPY_FLOAT32) {
        const float *x = PyArray_DATA(q);
        float scale = (float)(1.0 / sqrt(square));
        for (npy_intp i = 0; i < dim; i++)
            y[i] = x[i] * scale;
    } else {
        const double *x = PyArray_DATA(q);
        double scale = 1.0 / sqrt(square);
        for (npy_intp i = 0; i < dim; i++)
            y[i] = (float)(x[i] * scale);
    }
    return out;
}

/* ---------------------------------------------------------------- first_products */

PyDoc_STRVAR(first_products_doc,
"first_products(scores, slots, products, images, k)\n"
"    -> (products, images, scores, found, valid)\n\n"
"Walk one row of hits ranked best first (float32 `scores` and int64 `slots` of the same\n"
"size, slot -1 for none) and keep the first hit of each distinct product, up to k: (1, k)\n"
"int64 product and image ids (the int16/32/64 columns `products` and `images` indexed by\n"
"slot) and float32 scores, padded with -1 / -inf past `found`. `valid` counts the row's\n"
"hits when fewer than k products were found (the walk stops at the k-th otherwise).");

/* Open addressing over product ids (k is at most a few hundred). */
typedef struct {
    int64_t *keys;
    uint8_t *used;
    size_t mask;
} seen_set;

static int
seen_add(seen_set *set, int64_t key)
{
    size_t h = (size_t)(((uint64_t)key * 0x9E3779B97F4A7C15ull) >> 32) & set->mask;
    while (set->used[h]) {
        if (set->keys[h] == key)
            return 0;
        h = (h + 1) & set->mask;
    }
    set->used[h] = 1;
    set->keys[h] = key;
    return 1;
}

static int
is_int_column(PyArrayObject *a)
{
    int type = PyArray_TYPE(a);
    return PyArray_NDIM(a) == 1 && (type == NPY_INT16 || type == NPY_INT32 || type == NPY_INT64);
}

static int64_t
int_at(PyArrayObject *a, npy_intp i)
{
    switch (PyArray_TYPE(a)) {
    case NPY_INT16:
        return ((const int16_t *)PyArray_DATA(a))[i];
    case NPY_INT32:
        return ((const int32_t *)PyArray_DATA(a))[i];
    default:
        return ((const int64_t *)PyArray_DATA(a))[i];
    }
}

static PyObject *
first_products(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    npy_intp k;
    if (nargs != 5 || (k = PyLong_AsSsize_t(args[4])) < 1) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError,
                            "first_products(scores, slots, products, images, k) with k >= 1");
        return NULL;
    }
    npy_intp width = PyArray_Check(args[0]) ? PyArray_SIZE((PyArrayObject *)args[0]) : -1;
    npy_intp rows = PyArray_Check(args[2]) ? PyArray_SIZE((PyArrayObject *)args[2]) : -1;
    PyArrayObject *scores_in = plain_array(args[0], width), *slots_in = plain_array(args[1], width);
    PyArrayObject *products = plain_array(args[2], rows), *images = plain_array(args[3], rows);
    if (!scores_in || !slots_in || !products || !images ||
        PyArray_TYPE(scores_in) != NPY_FLOAT32 || PyArray_TYPE(slots_in) != NPY_INT64 ||
        !is_int_column(products) || !is_int_column(images)) {
        PyErr_SetString(PyExc_TypeError,
                        "first_products: scores float32 and slots int64 of one size, products "
                        "and images int16/32/64 columns of one length, all C-contiguous");
        return NULL;
    }
    const float *scores = PyArray_DATA(scores_in);
    const int64_t *slots = PyArray_DATA(slots_in);
    for (npy_intp i = 0; i < width; i++)
        if (slots[i] >= rows) {
            PyErr_SetString(PyExc_IndexError, "first_products: a slot past the columns");
            return NULL;
        }

    npy_intp shape[2] = {1, k};
    PyObject *out_products = PyArray_SimpleNew(2, shape, NPY_INT64);
    PyObject *out_images = PyArray_SimpleNew(2, shape, NPY_INT64);
    PyObject *out_scores = PyArray_SimpleNew(2, shape, NPY_FLOAT32);
    size_t cap = 16;
    while (cap < (size_t)(2 * k))
        cap <<= 1;
    int64_t small_keys[512];
    uint8_t small_used[512];
    seen_set set = {small_keys, small_used, cap - 1};
    if (cap > 512) {
        set.keys = PyMem_Malloc(cap * sizeof(int64_t));
        set.used = PyMem_Malloc(cap);
    }
    if (!out_products || !out_images || !out_scores || !set.keys || !set.used) {
        if (set.keys != small_keys) {
            PyMem_Free(set.keys);
            PyMem_Free(set.used);
        }
        Py_XDECREF(out_products);
        Py_XDECREF(out_images);
        Py_XDECREF(out_scores);
        return PyErr_Occurred() ? NULL : PyErr_NoMemory();
    }
    memset(set.used, 0, cap);
    int64_t *pids = PyArray_DATA((PyArrayObject *)out_products);
    int64_t *iids = PyArray_DATA((PyArrayObject *)out_images);
    float *best = PyArray_DATA((PyArrayObject *)out_scores);

    npy_intp found = 0, valid = 0;
    for (npy_intp i = 0; i < width && found < k; i++) {
        if (slots[i] < 0)
            continue;
        valid++;
        int64_t product = int_at(products, slots[i]);
        if (!seen_add(&set, product))
            continue;
        pids[found] = product;
        iids[found] = int_at(images, slots[i]);
        best[found] = scores[i];
        found++;
    }
    if (set.keys != small_keys) {
        PyMem_Free(set.keys);
        PyMem_Free(set.used);
    }
    for (npy_intp j = found; j < k; j++) {
        pids[j] = -1;
        iids[j] = -1;
        best[j] = -INFINITY;
    }
    return Py_BuildValue("(NNNnn)", out_products, out_images, out_scores, found, valid);
}

/* ---------------------------------------------------------------- RWLock */

typedef struct {
    PyObject_HEAD
    pthread_mutex_t mutex;
    pthread_cond_t changed;
    long readers;
    long writers_waiting;
    int writer;
} RWLockObject;

/* The mutex guards the counts for a few instructions at a time and is never held while
 * waiting for the GIL: a wait releases the GIL first and, woken, gives the mutex back
 * before taking the GIL again (a thread holding the GIL may be waiting for the mutex). */
#define WAIT_THEN(lock, blocked, then)                                 \
    do {                                                               \
        Py_BEGIN_ALLOW_THREADS;                                        \
        pthread_mutex_lock(&(lock)->mutex);                            \
        while (blocked)                                                \
            pthread_cond_wait(&(lock)->changed, &(lock)->mutex);       \
        then;                                                          \
        pthread_mutex_unlock(&(lock)->mutex);                          \
        Py_END_ALLOW_THREADS;                                          \
    } while (0)

static void
rw_acquire_read(RWLockObject *lock)
{
    pthread_mutex_lock(&lock->mutex);
    if (!(lock->writer || lock->writers_waiting)) {
        lock->readers++;
        pthread_mutex_unlock(&lock->mutex);
        return;
    }
    pthread_mutex_unlock(&lock->mutex);
    WAIT_THEN(lock, lock->writer || lock->writers_waiting, lock->readers++);
}

static void
rw_release_read(RWLockObject *lock)
{
    pthread_mutex_lock(&lock->mutex);
    lock->readers--;
    if (lock->readers == 0 && lock->writers_waiting)
        pthread_cond_broadcast(&lock->changed);
    pthread_mutex_unlock(&lock->mutex);
}

static void
rw_acquire_write(RWLockObject *lock)
{
    pthread_mutex_lock(&lock->mutex);
    if (!(lock->writer || lock->readers)) {
        lock->writer = 1;
        pthread_mutex_unlock(&lock->mutex);
        return;
    }
    lock->writers_waiting++;
    pthread_mutex_unlock(&lock->mutex);
    WAIT_THEN(lock, lock->writer || lock->readers, (lock->writers_waiting--, lock->writer = 1));
}

static void
rw_release_write(RWLockObject *lock)
{
    pthread_mutex_lock(&lock->mutex);
    lock->writer = 0;
    pthread_cond_broadcast(&lock->changed);
    pthread_mutex_unlock(&lock->mutex);
}

/* ``with lock.read():`` and ``with lock.write():`` return a guard of the lock. */
typedef struct {
    PyObject_HEAD
    RWLockObject *lock;
    int write;
} GuardObject;

static PyTypeObject GuardType;

static PyObject *
guard_enter(GuardObject *self, PyObject *unused)
{
    if (self->write)
        rw_acquire_write(self->lock);
    else
        rw_acquire_read(self->lock);
    Py_RETURN_NONE;
}

static PyObject *
guard_exit(GuardObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (self->write)
        rw_release_write(self->lock);
    else
        rw_release_read(self->lock);
    Py_RETURN_FALSE;
}

static void
guard_dealloc(GuardObject *self)
{
    Py_XDECREF(self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef guard_methods[] = {
    {"__enter__", (PyCFunction)guard_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))guard_exit, METH_FASTCALL, NULL},
    {NULL},
};

static PyTypeObject GuardType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "workers.index._hotpath.Guard",
    .tp_basicsize = sizeof(GuardObject),
    .tp_dealloc = (destructor)guard_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The read or write side of an RWLock, as a context manager.",
    .tp_methods = guard_methods,
};

static PyObject *
rwlock_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "RWLock() takes no arguments");
        return NULL;
    }
    RWLockObject *self = (RWLockObject *)type->tp_alloc(type, 0);
    if (self) {
        pthread_mutex_init(&self->mutex, NULL);
        pthread_cond_init(&self->changed, NULL);
    }
    return (PyObject *)self;
}

static void
rwlock_dealloc(RWLockObject *self)
{
    pthread_cond_destroy(&self->changed);
    pthread_mutex_destroy(&self->mutex);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A new guard a call (~50 ns): one kept by the lock would make a reference cycle. */
static PyObject *
new_guard(RWLockObject *lock, int write)
{
    GuardObject *guard = PyObject_New(GuardObject, &GuardType);
    if (guard) {
        Py_INCREF(lock);
        guard->lock = lock;
        guard->write = write;
    }
    return (PyObject *)guard;
}

static PyObject *
rwlock_read(RWLockObject *self, PyObject *unused)
{
    return new_guard(self, 0);
}

static PyObject *
rwlock_write(RWLockObject *self, PyObject *unused)
{
    return new_guard(self, 1);
}

static PyMethodDef rwlock_methods[] = {
    {"read", (PyCFunction)rwlock_read, METH_NOARGS, "Shared access: ``with lock.read(): ...``."},
    {"write", (PyCFunction)rwlock_write, METH_NOARGS,
     "Exclusive access: ``with lock.write(): ...``; waits for the readers inside, and new "
     "readers wait for it."},
    {NULL},
};

static PyTypeObject RWLockType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "workers.index._hotpath.RWLock",
    .tp_basicsize = sizeof(RWLockObject),
    .tp_dealloc = (destructor)rwlock_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A readers-writer lock: many concurrent searches, one exclusive writer, writers "
              "not starved.",
    .tp_methods = rwlock_methods,
    .tp_new = rwlock_new,
};

/* ---------------------------------------------------------------- module */

static PyMethodDef module_methods[] = {
    {"unit_query", (PyCFunction)(void (*)(void))unit_query, METH_FASTCALL, unit_query_doc},
    {"first_products", (PyCFunction)(void (*)(void))first_products, METH_FASTCALL,
     first_products_doc},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_hotpath", "A shard's single-query search path, compiled.", -1,
    module_methods,
};

PyMODINIT_FUNC
PyInit__hotpath(void)
{
    import_array();
    if (PyType_Ready(&GuardType) < 0 || PyType_Ready(&RWLockType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    Py_INCREF(&RWLockType);
    if (PyModule_AddObject(m, "RWLock", (PyObject *)&RWLockType) < 0) {
        Py_DECREF(&RWLockType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
