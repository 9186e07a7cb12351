"""LLVM-level helpers of the Numba kernels: bit casts, views, BLAS GEMM,
prefetch, vector width, min and max, zeroing."""

import operator

from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.extending import get_cython_function_address, intrinsic
from numba.np.arrayobj import populate_array


@intrinsic
def float64_bits(typingctx, x):
    """The int64 holding the bits of the float64 x (an LLVM bitcast: no instruction)."""
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def bits_float64(typingctx, x):
    """The float64 whose bits are the int64 x."""
    if x != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@intrinsic
def pow2_float32(typingctx, kd):
    """2**m for the float32 kd of _reduce32: m + 127 shifted into the exponent field."""
    if kd != types.float32:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        bits = builder.add(builder.bitcast(args[0], i32), i32(127))
        return builder.bitcast(builder.shl(bits, i32(23)), ir.FloatType())
    return types.float32(types.float32), codegen


def _view(context, builder, source_type, source, view_type, shape, offset=None):
    """A C-contiguous view of the array ``source`` with this shape (LLVM
    values), from its element ``offset`` (default 0): the same data, meminfo
    and parent, no check."""
    src = context.make_array(source_type)(context, builder, source)
    view = context.make_array(view_type)(context, builder)
    itemsize = src.itemsize
    strides = [itemsize]
    for extent in reversed(shape[1:]):
        strides.insert(0, builder.mul(strides[0], extent))
    data = src.data if offset is None else builder.gep(src.data, [offset], inbounds=True)
    populate_array(view, data=data, shape=shape, strides=strides, itemsize=itemsize,
                   meminfo=src.meminfo, parent=src.parent)
    return impl_ret_borrowed(context, builder, view_type, view._getvalue())


# Views the kernels take of arrays that are right by construction, where
# ``reshape`` compiles NumPy's size check, its error and a helper function
# of its own (normalize_reshape_value) at every call site (docs/kernels.md,
# "Compiling on demand").

@intrinsic
def flat(typingctx, a):
    """The 1-D view of all of the C-contiguous array a (compiled code only, no check)."""
    if not (isinstance(a, types.Array) and a.layout == "C"):
        return None
    view_type = a.copy(ndim=1, layout="C")

    def codegen(context, builder, signature, args):
        nitems = context.make_array(signature.args[0])(context, builder, args[0]).nitems
        return _view(context, builder, signature.args[0], args[0], view_type, [nitems])
    return view_type(a), codegen


@intrinsic
def rows_view(typingctx, a, rows, cols):
    """The (rows, cols) C-contiguous view of the first rows * cols elements
    of the 1-D contiguous array a (compiled code only, no check: the caller
    knows a has that many)."""
    if not (isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
            and isinstance(rows, types.Integer) and isinstance(cols, types.Integer)):
        return None
    view_type = a.copy(ndim=2, layout="C")

    def codegen(context, builder, signature, args):
        shape = [context.cast(builder, args[1], signature.args[1], types.intp),
                 context.cast(builder, args[2], signature.args[2], types.intp)]
        return _view(context, builder, signature.args[0], args[0], view_type, shape)
    return view_type(a, rows, cols), codegen


@intrinsic
def segment(typingctx, a, start, length):
    """The view a[start:start + length] of the C-contiguous array a, along its
    first axis (compiled code only, no check: the caller knows it lies in
    a). A slice compiles Numba's clipping of its bounds at every site."""
    if not (isinstance(a, types.Array) and a.layout == "C"
            and isinstance(start, types.Integer) and isinstance(length, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        a_type, start_type, length_type = signature.args
        intp = types.intp
        shape = cgutils.unpack_tuple(builder, context.make_array(a_type)(
            context, builder, args[0]).shape, a_type.ndim)
        offset = context.cast(builder, args[1], start_type, intp)
        for extent in shape[1:]:
            offset = builder.mul(offset, extent)
        length = context.cast(builder, args[2], length_type, intp)
        return _view(context, builder, a_type, args[0], a_type, [length] + shape[1:], offset)
    return a(a, start, length), codegen


@intrinsic
def row_segment(typingctx, a, row, start, length):
    """The 1-D view a[row, start:start + length] of the 2-D C-contiguous
    array a (compiled code only, no check, as ``segment``)."""
    if not (isinstance(a, types.Array) and a.ndim == 2 and a.layout == "C"
            and all(isinstance(t, types.Integer) for t in (row, start, length))):
        return None
    view_type = a.copy(ndim=1, layout="C")

    def codegen(context, builder, signature, args):
        a_type, row_type, start_type, length_type = signature.args
        intp = types.intp
        cols = cgutils.unpack_tuple(builder, context.make_array(a_type)(
            context, builder, args[0]).shape, 2)[1]
        offset = builder.add(builder.mul(context.cast(builder, args[1], row_type, intp), cols),
                             context.cast(builder, args[2], start_type, intp))
        length = context.cast(builder, args[3], length_type, intp)
        return _view(context, builder, a_type, args[0], view_type, [length], offset)
    return view_type(a, row, start, length), codegen


# The GEMMs of the wide layers call the Fortran dgemm/sgemm of
# scipy.linalg.cython_blas (the library the Cython kernels and Numba's np.dot
# use) by symbol name, so the compiled code stays cacheable (a ctypes
# function pointer would be a dynamic global) and can pass beta = 1:
# products accumulate into their gradient with no temporary and no add pass.
for _name in ("dgemm", "sgemm"):
    llvm_binding.add_symbol("shallownet_" + _name,
                            get_cython_function_address("scipy.linalg.cython_blas", _name))
NO_TRANS, TRANS = ord("N"), ord("T")     # transa, transb of gemm


@intrinsic
def gemm(typingctx, transa, transb, m, n, k, a, lda, b, ldb, beta, c, ldc):
    """Column-major C (m x n, leading dimension ldc) := op(A) op(B) + beta C,
    op given by transa/transb (NO_TRANS or TRANS): Fortran GEMM with alpha = 1, its
    scalar arguments passed by reference from stack slots. The arrays' data
    pointers only are read: the caller passes the layout in the leading
    dimensions. No checks (BLAS's own are of its arguments' values)."""
    if not (isinstance(c, types.Array) and c.dtype in (types.float32, types.float64)
            and isinstance(a, types.Array) and isinstance(b, types.Array)
            and a.dtype == c.dtype and b.dtype == c.dtype):
        return None
    symbol = "shallownet_dgemm" if c.dtype == types.float64 else "shallownet_sgemm"
    dtype = c.dtype

    def codegen(context, builder, signature, args):
        voidp = ir.IntType(8).as_pointer()
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [voidp] * 13), symbol)
        argtys = signature.args

        def by_reference(i, ty):
            value = context.cast(builder, args[i], argtys[i], ty)
            return builder.bitcast(cgutils.alloca_once_value(builder, value), voidp)

        def data(i):
            array = context.make_array(argtys[i])(context, builder, args[i])
            return builder.bitcast(array.data, voidp)

        one = builder.bitcast(
            cgutils.alloca_once_value(builder, context.get_constant(dtype, 1)), voidp)
        builder.call(fn, [by_reference(0, types.int8), by_reference(1, types.int8),
                          by_reference(2, types.int32), by_reference(3, types.int32),
                          by_reference(4, types.int32), one, data(5),
                          by_reference(6, types.int32), data(7), by_reference(8, types.int32),
                          by_reference(9, dtype), data(10), by_reference(11, types.int32)])
        return context.get_dummy_value()
    return types.none(transa, transb, m, n, k, a, lda, b, ldb, beta, c, ldc), codegen


@intrinsic
def prefetch(typingctx, a, i):
    """A hint that element i (flat index) of the C-contiguous array a will be
    read soon: llvm.prefetch (read, keep in all cache levels). No effect on results."""
    if not isinstance(a, types.Array) or not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        pointer = builder.bitcast(builder.gep(array.data, [args[1]]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        prefetch = builder.module.declare_intrinsic(
            "llvm.prefetch", [pointer.type],
            ir.FunctionType(ir.VoidType(), [pointer.type, i32, i32, i32]))
        builder.call(prefetch, [pointer, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()
    return types.none(a, i), codegen


@intrinsic
def wide_vectors(typingctx):
    """Let LLVM vectorise the calling function at the host's full width.

    LLVM's tuning for AVX-512 CPUs prefers 256-bit vectors
    (``prefer-256-bit``), so on such hosts Numba's loops ran at half the
    width of the Cython build's AVX-512 path (docs/kernels.md). This sets
    the function attribute ``prefer-vector-width=512`` on the function it is
    called in (a function inlined in Numba IR carries it into its caller),
    and nothing process-wide: NUMBA_CPU_FEATURES and every other function
    compiled in the process keep their settings. Without AVX-512 the
    widest vectors are already the preferred ones and the code is unchanged.
    """
    def codegen(context, builder, signature, args):
        # llvmlite's attribute sets know no key="value" attributes: the text
        # goes into the function's definition as written
        set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()
    return types.none(), codegen


# min and max of two numbers as one select, in place: Numba's min() and
# max() are overloads, each compiled as a function of its own for every
# signature (and written as conditional expressions they added blocks to
# every inlined copy; docs/kernels.md, "Compiling on demand").

def _select(typingctx, a, b, op):
    if not (isinstance(a, types.Number) and isinstance(b, types.Number)):
        return None
    ty = typingctx.unify_types(a, b)
    if ty is None:
        return None

    def codegen(context, builder, signature, args):
        x = context.cast(builder, args[0], signature.args[0], ty)
        y = context.cast(builder, args[1], signature.args[1], ty)
        # as Numba's min and max: b if (b op a) else a, so a NaN in b gives a
        before = context.get_function(op, types.boolean(ty, ty))(builder, (y, x))
        return builder.select(before, y, x)
    return ty(a, b), codegen


@intrinsic
def smaller(typingctx, a, b):
    """min(a, b) of two numbers, with the same result as Numba's min."""
    return _select(typingctx, a, b, operator.lt)


@intrinsic
def larger(typingctx, a, b):
    """max(a, b) of two numbers, with the same result as Numba's max."""
    return _select(typingctx, a, b, operator.gt)


@intrinsic
def zero(typingctx, a):
    """a = 0 for a C-contiguous array of numbers: one memset (all bits 0
    is +0 in every integer and IEEE float type), no loop to compile."""
    if not (isinstance(a, types.Array) and a.layout == "C" and isinstance(a.dtype, types.Number)):
        return None

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        cgutils.memset(builder, array.data, builder.mul(array.nitems, array.itemsize), 0)
        return context.get_dummy_value()
    return types.none(a), codegen
