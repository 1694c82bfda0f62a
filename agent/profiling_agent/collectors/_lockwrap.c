/* The lock-wrapper's uncontended path in C (collectors/locks.py defines the wrapper and falls
 * back to Python without this module).
 *
 * Every acquire of a wrapped lock first tries the real lock without blocking; only when that
 * fails is the Python slow path called (locks._contended: it times the blocking acquire and
 * records the waiter's stack while a mutex run records). As Python methods, `with lock:` cost
 * ~300 ns more than the bare lock: a Python frame for __enter__ and one for __exit__, about 1 %
 * of the overhead benchmark's CPU (40,000 `with lock:` a second). Here each is one C call into
 * the real lock. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

typedef struct {
    PyObject_HEAD
    PyObject *lock;         /* the real lock */
    PyObject *try_acquire;  /* its bound acquire */
    PyObject *release;      /* its bound release */
    PyObject *weakrefs;
} Wrapper;

static PyObject *contended;  /* locks._contended(lock, timeout, depth) */

static int wrapper_init(Wrapper *self, PyObject *args, PyObject *kwargs)
{
    PyObject *lock;
    if (!PyArg_ParseTuple(args, "O:LockWrapper", &lock))
        return -1;
    PyObject *try_acquire = PyObject_GetAttrString(lock, "acquire");
    if (try_acquire == NULL)
        return -1;
    PyObject *release = PyObject_GetAttrString(lock, "release");
    if (release == NULL) {
        Py_DECREF(try_acquire);
        return -1;
    }
    Py_INCREF(lock);
    Py_XSETREF(self->lock, lock);
    Py_XSETREF(self->try_acquire, try_acquire);
    Py_XSETREF(self->release, release);
    return 0;
}

static int wrapper_traverse(Wrapper *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->lock);
    Py_VISIT(self->try_acquire);
    Py_VISIT(self->release);
    return 0;
}

static int wrapper_clear(Wrapper *self)
{
    Py_CLEAR(self->lock);
    Py_CLEAR(self->try_acquire);
    Py_CLEAR(self->release);
    return 0;
}

static void wrapper_dealloc(Wrapper *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    wrapper_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

/* 1 acquired, 0 busy, -1 error */
static int try_now(Wrapper *self)
{
    if (self->try_acquire == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "lock wrapper not initialized");
        return -1;
    }
    PyObject *got = PyObject_CallOneArg(self->try_acquire, Py_False);
    if (got == NULL)
        return -1;
    int acquired = PyObject_IsTrue(got);
    Py_DECREF(got);
    return acquired;
}

static PyObject *slow_path(Wrapper *self, PyObject *timeout)
{
    if (contended == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "lock wrapper has no slow path set");
        return NULL;
    }
    /* depth 1: _contended's caller is the frame that acquires (no Python frame here) */
    PyObject *args[3] = {self->lock, timeout, NULL};
    PyObject *depth = PyLong_FromLong(1);
    if (depth == NULL)
        return NULL;
    args[2] = depth;
    PyObject *result = PyObject_Vectorcall(contended, args, 3, NULL);
    Py_DECREF(depth);
    return result;
}

static PyObject *wrapper_acquire(Wrapper *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"blocking", "timeout", NULL};
    int blocking = 1;
    PyObject *timeout = NULL;
    if ((args != NULL && PyTuple_GET_SIZE(args)) || kwargs != NULL) {
        if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|pO:acquire", keywords, &blocking,
                                         &timeout))
            return NULL;
    }
    int acquired = try_now(self);
    if (acquired < 0)
        return NULL;
    if (acquired)
        Py_RETURN_TRUE;
    if (!blocking)
        Py_RETURN_FALSE;
    if (timeout != NULL)
        return slow_path(self, timeout);
    PyObject *forever = PyFloat_FromDouble(-1.0);
    if (forever == NULL)
        return NULL;
    PyObject *result = slow_path(self, forever);
    Py_DECREF(forever);
    return result;
}

static PyObject *wrapper_enter(Wrapper *self, PyObject *unused)
{
    return wrapper_acquire(self, NULL, NULL);
}

static PyObject *wrapper_exit(Wrapper *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (self->release == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "lock wrapper not initialized");
        return NULL;
    }
    PyObject *result = PyObject_CallNoArgs(self->release);
    if (result == NULL)
        return NULL;
    Py_DECREF(result);
    Py_RETURN_NONE;
}

static PyObject *set_slow_path(PyObject *module, PyObject *callable)
{
    if (!PyCallable_Check(callable)) {
        PyErr_SetString(PyExc_TypeError, "the slow path must be callable");
        return NULL;
    }
    Py_INCREF(callable);
    Py_XSETREF(contended, callable);
    Py_RETURN_NONE;
}

static PyMethodDef wrapper_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))wrapper_acquire, METH_VARARGS | METH_KEYWORDS,
     "acquire(blocking=True, timeout=-1) -> bool, as the real lock's."},
    {"__enter__", (PyCFunction)wrapper_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))wrapper_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef wrapper_members[] = {
    {"_lock", T_OBJECT, offsetof(Wrapper, lock), READONLY, "the real lock"},
    {"release", T_OBJECT, offsetof(Wrapper, release), READONLY, "the real lock's release"},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(Wrapper, weakrefs), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot wrapper_slots[] = {
    {Py_tp_init, wrapper_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, wrapper_dealloc},
    {Py_tp_traverse, wrapper_traverse},
    {Py_tp_clear, wrapper_clear},
    {Py_tp_methods, wrapper_methods},
    {Py_tp_members, wrapper_members},
    {Py_tp_doc, "LockWrapper(lock): acquire/with/release through the real lock, calling the "
                "slow path set with set_slow_path() only when it is busy."},
    {0, NULL},
};

static PyType_Spec wrapper_spec = {
    "profiling_agent.collectors._lockwrap.LockWrapper",
    sizeof(Wrapper),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    wrapper_slots,
};

static PyMethodDef module_methods[] = {
    {"set_slow_path", set_slow_path, METH_O,
     "set_slow_path(fn): fn(lock, timeout, depth) -> bool acquires a busy lock."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_lockwrap",
    "The lock-wrapper's uncontended path (see collectors/locks.py).", -1, module_methods,
};

PyMODINIT_FUNC PyInit__lockwrap(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    PyObject *type = PyType_FromSpec(&wrapper_spec);
    if (type == NULL || PyModule_AddObject(m, "LockWrapper", type) < 0) {
        Py_XDECREF(type);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
