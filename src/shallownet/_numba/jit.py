"""Compiler flags, dtype helpers and compile-time choice for the Numba kernels.

Flags (docs/kernels.md, "One epoch, fused and tiled"): fastmath 'contract'
only, so that a*b + c may become an FMA, which is deterministic; functions
that sum over rows also allow 'reassoc', so that LLVM keeps vector partial
sums in a fixed order for a compiled function; the optimizer steps have no
fastmath at all and round as the NumPy reference does. error_model='numpy'
drops the ZeroDivisionError branch on each division, which would stop the
loops vectorising.

Choice: a fit's configuration is made of compile-time constants, so that
only the code it runs is compiled (``shallownet._numba`` builds one entry
point per configuration, whose constants reach every kernel below it):
- the activation code is a literal integer (a ``Literal`` type): the
  overload ``activations.activation`` picks its implementation while typing;
- the optimizer's step kind is an integer of the entry point's closure:
  Numba prunes a branch comparing two constants (``kind == PLAIN``) before
  typing it, so only that kind's step is compiled. (An overload choosing
  it while typing, as the activation's does, was compiled as a function of
  its own even when inlined: ~0.25 s of a first fit.)
- the flags gemm, parallel and gather are None (off) or True (on): Numba
  prunes a branch ``if flag is None`` by the flag's type in every function
  it is passed to (and in every function inlined there), so the code behind
  the other value is never typed or compiled. The flag must arrive as an
  argument of type none or a literal (a caller's constant): a plain bool,
  as a record's field is, is not pruned by, nor is a comparison of a
  literal's value; both sides would be compiled (``constant_flag``).
The kernels compiled on their own call one another by symbol
(``calls.kernel``), so each is optimized once; small helpers are inlined in
Numba IR (inline="always") into the kernel that uses them.
"""

from numba import types
from numba.core.compiler import CompilerBase, DefaultPassBuilder
from numba.core.compiler_machinery import register_pass
from numba.core.lowering import Lower
from numba.core.typed_passes import NativeLowering, NopythonRewrites
from numba.extending import intrinsic

# The kernels' pipeline is Numba's nopython pipeline without its
# after-inference rewrites: array expressions and arrays of constants
# (both allocate, which no kernel can: _nrt=False, below) and string-literal
# indexes (none in the kernels). The pass only walked every kernel's IR,
# 1.4-2.6% of a first fit's instructions (docs/kernels.md, "Compiling on
# demand").

def _nopython_passes(state, lowering=NativeLowering):
    pm = DefaultPassBuilder.define_nopython_pipeline(state)
    pm.passes = [(lowering if kind is NativeLowering else kind, what)
                 for kind, what in pm.passes if kind is not NopythonRewrites]
    pm.finalize()
    return pm


class KernelCompiler(CompilerBase):
    """Numba's nopython pipeline without the after-inference rewrites."""

    def define_pipelines(self):
        return [_nopython_passes(self.state)]


# An entry point's Python wrapper unboxes its ~20 arrays once per call, and
# LLVM's optimization and code generation of it (with the entry's own code
# inlined into it) were most of the epoch loop's LLVM work, 4-5% of a first
# fit's instructions (docs/kernels.md, "Compiling on demand"). The wrapper
# is compiled optnone: not optimized, nothing inlined into it, fast
# instruction selection; the entry's own code is compiled as before.

class _EntryLower(Lower):
    def create_cpython_wrapper(self, release_gil=False):
        # Numba adds the wrapper's module to the library in this call, and
        # no other module: mark what that module defines
        library = self.library
        add_ir_module = library.add_ir_module

        def add_unoptimized(module):
            for function in module.functions:
                if not function.is_declaration:
                    function.attributes.add("noinline")
                    function.attributes.add("optnone")
            add_ir_module(module)
        library.add_ir_module = add_unoptimized
        try:
            super().create_cpython_wrapper(release_gil)
        finally:
            del library.add_ir_module


@register_pass(mutates_CFG=True, analysis_only=False)
class _EntryLowering(NativeLowering):
    _name = "shallownet_entry_lowering"

    @property
    def lowering_class(self):
        return _EntryLower


class EntryCompiler(CompilerBase):
    """The kernels' pipeline, with the entry point's Python wrapper
    compiled optnone (``_EntryLower``)."""

    def define_pipelines(self):
        return [_nopython_passes(self.state, _EntryLowering)]


# Kernels are called from compiled code only, so none gets the wrapper
# that calls it from Python (nor the C-callable one): lowering and
# optimizing those cost each compiled function time in a first fit. The
# few functions Python calls (the entry points) take ``entry(...)``.
# No kernel counts references (_nrt=False), the entry points included:
# none allocates an array or returns one (the workspace comes from
# Python), so every array they see is held by the Python caller for the
# whole call, and the increments and decrements around each record and
# view were LLVM work for nothing (docs/kernels.md, "Compiling on demand").
_INNER = dict(cache=True, nogil=True, error_model="numpy", no_cpython_wrapper=True,
              no_cfunc_wrapper=True, _nrt=False, pipeline_class=KernelCompiler)
JIT = dict(_INNER, fastmath={"contract"})
JIT_ROW_SUM = dict(_INNER, fastmath={"contract", "reassoc"})
# fastmath=False set explicitly: an unset flag is inherited from the caller
JIT_EXACT = dict(_INNER, fastmath=False)


def entry(options):
    """These compiler options for a function Python calls: with its wrapper,
    compiled without optimization (``EntryCompiler``)."""
    return dict(options, no_cpython_wrapper=False, pipeline_class=EntryCompiler)


# like and derivative_from_output are intrinsics, not overloads: an
# overload's implementation is compiled as a function of its own for each
# signature, an intrinsic emits its few instructions in place.

@intrinsic
def like(typingctx, x, a):
    """The scalar x converted to the dtype of the array a, as ``a.dtype.type(x)``
    (compiled code only)."""
    if not (isinstance(a, types.Array) and isinstance(x, types.Number)):
        return None

    def codegen(context, builder, signature, args):
        return context.cast(builder, args[0], signature.args[0], signature.return_type)
    return a.dtype(x, a), codegen


def _flag(on, arg):
    """The typing and code of an intrinsic of one argument (typed ``arg``)
    that returns a flag: the literal True when ``on``, else None."""
    if not on:
        def codegen(context, builder, signature, args):
            return context.get_dummy_value()
        return types.none(arg), codegen

    def codegen(context, builder, signature, args):
        return context.get_constant(types.boolean, True)
    return types.literal(True)(arg), codegen


@intrinsic
def derivative_from_output(typingctx, a):
    """A flag (``constant_flag``'s kind), True where g'(z) is computed from
    a1 = g(z) alone, exactly as the activation computes it: float64 (tanh
    1 - a^2, sigmoid a (1 - a), relu and identity by sign); None for
    float32, whose tanh and sigmoid derivatives keep their accuracy near
    saturation with terms a1 does not hold. (Compiled code only; passed to
    a kernel, it prunes the other form there.)"""
    if not isinstance(a, types.Array):
        return None
    return _flag(a.dtype == types.float64, a)


@intrinsic
def constant_flag(typingctx, flag):
    """A flag read from a record as a compile-time constant (compiled code
    only). Numba prunes ``if flag is None`` in a function only where the
    argument's type is none or a literal; a record's field True from Python
    is a plain bool, so both sides were compiled (docs/kernels.md,
    "Compiling on demand"). Flags are None or True by construction, so a
    bool is the literal True here."""
    if not isinstance(flag, types.NoneType) and flag != types.boolean:
        return None
    return _flag(flag == types.boolean, flag)
