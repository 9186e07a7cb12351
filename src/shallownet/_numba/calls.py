"""Calls between compiled kernels by symbol, without linking.

Numba links the code of every compiled function a function calls into the
caller's own module, and optimizes it and makes machine code of it once more
there: a tile's code was compiled twice in a first fit, three times for a
tile called from the parallel loop's body. A kernel wrapped by ``kernel``
is compiled (or loaded from the cache) as for any call, but its callers
declare its symbol and Numba's JIT engine resolves it among the functions
the process has loaded (docs/kernels.md, "Compiling on demand").

A caller loaded from Numba's cache must find its callees loaded first: each
call records, in the caller's ``reload_init`` (which Numba runs before it
loads a cached function), the callee and its argument types. Numba names a
compiled function with a number counted per process, so a callee compiled
again in another process (its cache entry rewritten by a concurrent process,
or stale after an edit) may carry another symbol than the one the cached
caller calls; a two-instruction forwarder then gives it the caller's name.
"""

from dataclasses import dataclass
from importlib import import_module
from inspect import signature

from llvmlite import ir
from numba import njit
from numba.extending import intrinsic

_forwarders = []        # the forwarders' libraries, kept as long as the process


@dataclass(frozen=True)
class _Callee:
    """A caller's ``reload_init`` entry: load or compile the kernel
    ``module.name`` for ``argtypes`` and make sure ``symbol`` names it in the
    JIT engine. (Hashable: a caller calling a kernel at several sites keeps
    one.)"""
    module: str
    name: str
    argtypes: tuple
    symbol: str

    def __call__(self):
        from numba.core.registry import cpu_target

        dispatcher = getattr(import_module(self.module), self.name).dispatcher
        cres = dispatcher.overloads.get(self.argtypes)
        if cres is None:
            dispatcher.compile(self.argtypes)
            cres = dispatcher.overloads[self.argtypes]
        actual = cres.fndesc.mangled_name
        context = cpu_target.target_context
        codegen = context.codegen()
        if actual == self.symbol or codegen._engine.is_symbol_defined(self.symbol):
            return
        _forward(context, codegen, self.symbol, actual, cres.fndesc)


def _forward(context, codegen, symbol, actual, fndesc):
    """Define ``symbol`` as a tail call of ``actual`` (same Numba signature)."""
    fnty = context.call_conv.get_function_type(fndesc.restype, fndesc.argtypes)
    module_ir = codegen._create_empty_module(symbol)
    forwarder = ir.Function(module_ir, fnty, symbol)
    builder = ir.IRBuilder(forwarder.append_basic_block())
    builder.ret(builder.call(ir.Function(module_ir, fnty, actual), forwarder.args, tail=True))
    library = codegen.create_library(f"forwarder to {actual}")
    library.add_ir_module(module_ir)
    library.finalize()
    _forwarders.append(library)


def direct(dispatcher, name):
    """An intrinsic calling the compiled function ``dispatcher``, which is
    reachable from its module as ``name`` (the intrinsic itself: its
    ``dispatcher`` attribute), by its symbol. It is typed as a call of the
    dispatcher: the callee compiles for the argument types, literals
    included (the activation code stays a constant)."""
    module = dispatcher.py_func.__module__

    def typer(typingctx, args):
        sig = typingctx.resolve_function_type(typingctx.resolve_value_type(dispatcher), args, {})
        if sig is None:
            return None

        def codegen(context, builder, signature, values):
            cres = dispatcher.overloads[tuple(sig.args)]
            fndesc = cres.fndesc
            values = [context.cast(builder, value, ty, to)
                      for value, ty, to in zip(values, signature.args, fndesc.argtypes)]
            hooks = getattr(context.active_code_library, "_reload_init", None)
            if hooks is None:
                # Numba < 0.63 cannot load a cached caller's callees first:
                # link the callee's code, as Numba does for any call
                context.add_linking_libs([cres.library])
            else:
                hooks.add(_Callee(module, name, tuple(sig.args), fndesc.mangled_name))
            return context.call_internal(builder, fndesc, cres.signature, values)
        return sig.return_type(*args), codegen

    # Numba types an intrinsic by its own parameters: give it the callee's
    params = ", ".join(signature(dispatcher.py_func).parameters)
    scope = {"typer": typer}
    exec(f"def {name}(typingctx, {params}):\n    return typer(typingctx, ({params},))\n",
         scope)
    # prefer_literal: typed first with int64 for a literal, the activation
    # code would compile (and fail) the whole tile before the literal try
    call = intrinsic(prefer_literal=True)(scope[name])
    call.dispatcher = dispatcher
    call.home = (module, name)          # where a cached caller finds it again
    return call


def kernel(options):
    """Decorator: ``njit(**options)``, called from other kernels by symbol
    (``direct``); the module must keep it under the function's name."""
    def wrap(py_func):
        return direct(njit(**options)(py_func), py_func.__name__)
    return wrap
