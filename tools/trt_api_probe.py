"""Check every TensorRT name our code uses against an importable TensorRT module: names and signatures, not behaviour.

Run by tests/test_tensorrt_api.py in a subprocess whose LD_LIBRARY_PATH holds stub
libnvinfer / libnvonnxparser / libnvinfer_plugin libraries (tools/trt_stubs/, compiled
by the test), so the real `tensorrt_bindings` wheel imports on a machine without TensorRT:

    python tools/trt_api_probe.py FILE.py [FILE.py ...]   # prints one JSON object

The probe aliases tensorrt_bindings as `tensorrt`, imports it through our own
`require_tensorrt()`, then walks the AST of each file that uses the name `trt`:

- every `trt.X`, `trt.X.Y` must exist (classes, enum members, functions);
- the type of each local / `self.` variable is inferred from what it was bound to
  (`trt.Builder(...)` -> Builder; `builder.create_builder_config()` -> whatever the
  real pybind11 signature says it returns; parameters annotated `trt.IBuilderConfig`),
  and every attribute used on a typed value must exist on that class, a property
  must not be called and a method must be called;
- every call of a TensorRT method, constructor or function must fit one of its
  real overloads (pybind11 signatures in __doc__, inspect for Python functions):
  positional count, keyword names, required parameters, and the TensorRT class of
  any argument whose type is known (an enum member, a TensorRT object, a literal).

Values whose type cannot be inferred go unchecked: the test therefore also asserts
a floor of names that must have been checked.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

#: pybind11 type names in the bindings' docstrings that are not the Python class names
TYPE_ALIASES = {"nvonnxparser::IParserError": "ParserError"}


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    has_default: bool
    kind: str  # "pos_or_kw", "pos_only", "kw_only", "var_pos", "var_kw"


@dataclass(frozen=True)
class Signature:
    params: tuple[Param, ...]
    returns: str

    def text(self) -> str:
        return "(" + ", ".join(p.name + ("=" if p.has_default else "") for p in self.params) + f") -> {self.returns}"


@dataclass(frozen=True)
class T:
    """An inferred type: the trt module, a TensorRT class object, an instance of one, a function, or a literal."""

    kind: str  # "module", "class", "instance", "function", "literal"
    obj: object = None

    def name(self) -> str:
        if self.kind == "module":
            return "trt"
        if self.kind == "literal":
            return type(self.obj).__name__
        return getattr(self.obj, "__qualname__", repr(self.obj))


def _split_top(text: str) -> list[str]:
    """Split a parameter list at top-level commas (brackets and <...> defaults nest)."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


def _parse_params(text: str, drop_self: bool) -> tuple[Param, ...]:
    tokens = _split_top(text)
    if drop_self and tokens and (tokens[0].startswith("self") or tokens[0].startswith("arg0")):
        tokens = tokens[1:]
    params, kind = [], "pos_or_kw"
    for token in tokens:
        if token == "/":
            params = [Param(p.name, p.type, p.has_default, "pos_only") for p in params]
            continue
        if token == "*":
            kind = "kw_only"
            continue
        if token.startswith("**"):
            params.append(Param(token[2:].split(":")[0], "", True, "var_kw"))
            continue
        if token.startswith("*"):
            params.append(Param(token[1:].split(":")[0], "", True, "var_pos"))
            kind = "kw_only"
            continue
        head, _, default = token.partition(" = ")
        name, _, typ = head.partition(": ")
        params.append(Param(name.strip(), typ.strip(), bool(default), kind))
    return tuple(params)


def pybind_signatures(doc: str | None, name: str, drop_self: bool) -> list[Signature]:
    """Every overload `name(...) -> R` in a pybind11 docstring (the `(*args, **kwargs)` header of overloads skipped)."""
    pattern = re.compile(rf"^\s*(?:\d+\.\s+)?{re.escape(name)}\((.*)\)\s*->\s*(.+?)\s*$")
    out = []
    for line in (doc or "").splitlines():
        match = pattern.match(line)
        if match and match.group(1) != "*args, **kwargs":
            out.append(Signature(_parse_params(match.group(1), drop_self), match.group(2)))
    return out


def python_signature(func: object, drop_self: bool) -> list[Signature]:
    try:
        sig = inspect.signature(func)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return []
    kinds = {
        inspect.Parameter.POSITIONAL_ONLY: "pos_only",
        inspect.Parameter.POSITIONAL_OR_KEYWORD: "pos_or_kw",
        inspect.Parameter.KEYWORD_ONLY: "kw_only",
        inspect.Parameter.VAR_POSITIONAL: "var_pos",
        inspect.Parameter.VAR_KEYWORD: "var_kw",
    }
    params = [
        Param(p.name, "", p.default is not inspect.Parameter.empty, kinds[p.kind]) for p in sig.parameters.values()
    ]
    if drop_self and params:
        params = params[1:]
    return [Signature(tuple(params), "")]


@dataclass
class Probe:
    trt: object
    checked: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return self.trt.Builder.__module__ + "."  # "tensorrt_bindings.tensorrt." here, "tensorrt.tensorrt." for real

    # -- the bindings -------------------------------------------------------------------------------------------
    def resolve(self, typestr: str) -> T | None:
        """A docstring type ('tensorrt_bindings.tensorrt.ICudaEngine') -> instance type; None for builtins / unknown."""
        typestr = TYPE_ALIASES.get(typestr, typestr)
        typestr = typestr.removeprefix("typing.Optional[").removesuffix("]") if "Optional[" in typestr else typestr
        typestr = typestr.split(" | ")[0]
        name = typestr.removeprefix(self.prefix)
        if name == typestr and name not in TYPE_ALIASES.values():
            return None
        obj: object = self.trt
        for part in name.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                return None
        return T("instance", obj) if inspect.isclass(obj) else None

    def signatures(self, owner: T, attr: str) -> list[Signature]:
        if owner.kind == "class" and attr == "__init__":
            return pybind_signatures(owner.obj.__init__.__doc__, "__init__", True) or python_signature(
                owner.obj.__init__, True
            )
        target = inspect.getattr_static(owner.obj, attr)
        method = owner.kind == "instance"
        return pybind_signatures(getattr(target, "__doc__", None), attr, method) or python_signature(
            getattr(owner.obj, attr), method and not isinstance(target, staticmethod)
        )

    def attr_type(self, owner: T, attr: str, node: ast.AST, called: bool, where: str) -> T | None:
        """Check `owner.attr` exists and is used as what it is; its type (instance for properties, etc.)."""
        label = f"{owner.name()}.{attr}"
        if owner.kind == "module":
            label = f"trt.{attr}"
        if not hasattr(owner.obj if owner.kind != "module" else self.trt, attr):
            self.problems.append(f"{where}: {label} does not exist in TensorRT {self.trt.__version__}")
            return None
        self.checked.add(label)
        value = getattr(owner.obj if owner.kind != "module" else self.trt, attr)
        if owner.kind == "instance":
            static = inspect.getattr_static(owner.obj, attr)
            if isinstance(static, property):
                if called:
                    self.problems.append(f"{where}: {label} is a property, not a method: drop the call")
                sigs = pybind_signatures(static.fget.__doc__, "", True) if static.fget else []
                return self.resolve(sigs[0].returns) if sigs else None
            if callable(value) and not called:
                self.problems.append(f"{where}: {label} is a method: call it")
            return None
        if inspect.isclass(value):
            return T("class", value)
        if inspect.isroutine(value):
            return T("function", value)
        if type(value).__module__ == self.prefix[:-1]:
            return T("instance", type(value))  # an enum member
        return None  # a plain constant (trt.__version__ is a str)

    # -- calls ----------------------------------------------------------------------------------------------------
    def check_call(self, label: str, sigs: list[Signature], n_pos: int, keywords: dict[str, T | None], args, where):
        if not sigs:
            self.problems.append(f"{where}: {label}: no signature found to check the call against")
            return None
        reasons = []
        for sig in sigs:
            reason = self._fits(sig, n_pos, keywords, args)
            if reason is None:
                self.checked.add(f"{label}({', '.join(['_'] * n_pos + [k + '=' for k in keywords])})")
                return sig
            reasons.append(f"{sig.text()}: {reason}")
        self.problems.append(
            f"{where}: {label} called with {n_pos} positional, keywords {sorted(keywords)}: " + "; ".join(reasons)
        )
        return None

    def _fits(self, sig: Signature, n_pos: int, keywords: dict[str, T | None], args: list[T | None]) -> str | None:
        positional = [p for p in sig.params if p.kind in ("pos_only", "pos_or_kw")]
        var_pos = any(p.kind == "var_pos" for p in sig.params)
        var_kw = any(p.kind == "var_kw" for p in sig.params)
        if n_pos > len(positional) and not var_pos:
            return f"takes {len(positional)} positional"
        bound = {p.name: args[i] for i, p in enumerate(positional[:n_pos])}
        for key, typ in keywords.items():
            match = [p for p in sig.params if p.name == key and p.kind in ("pos_or_kw", "kw_only")]
            if not match and not var_kw:
                return f"no keyword {key!r}"
            if key in bound:
                return f"{key!r} given twice"
            bound[key] = typ
        missing = [
            p.name
            for p in sig.params
            if p.kind in ("pos_only", "pos_or_kw", "kw_only") and not p.has_default and p.name not in bound
        ]
        if missing:
            return f"missing {missing}"
        for p in sig.params:
            reason = self._type_mismatch(p, bound.get(p.name)) if p.name in bound else None
            if reason:
                return reason
        return None

    def _type_mismatch(self, param: Param, arg: T | None) -> str | None:
        if arg is None or not param.type:
            return None
        want = self.resolve(param.type)
        if arg.kind == "literal":
            if want is not None:
                return f"{param.name} wants {want.name()}, got a {arg.name()} literal"
            if param.type == "str" and not isinstance(arg.obj, str):
                return f"{param.name} wants str, got {arg.name()}"
            if param.type == "typing.SupportsInt" and isinstance(arg.obj, (str, bytes)):
                return f"{param.name} wants an int, got {arg.name()}"
            return None
        if want is not None and arg.kind == "instance" and not issubclass(arg.obj, want.obj):  # type: ignore[arg-type]
            return f"{param.name} wants {want.name()}, got {arg.name()}"
        return None


class FunctionWalker(ast.NodeVisitor):
    """Infers variable types in one function body (statement order) and checks every TensorRT use in it."""

    def __init__(self, probe: Probe, where: str, self_attrs: dict[str, T], record: bool) -> None:
        self.probe = probe
        self.where = where
        self.env: dict[str, T | None] = {}
        self.self_attrs = self_attrs
        self.record = record  # False: only infer self.attr types (first pass), report nothing

    def start(self, func: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for arg in [*func.args.posonlyargs, *func.args.args, *func.args.kwonlyargs]:
            self.env[arg.arg] = T("module") if arg.arg == "trt" else self.annotation(arg.annotation)
        for stmt in func.body:
            self.visit(stmt)

    def annotation(self, node: ast.expr | None) -> T | None:
        if isinstance(node, ast.BinOp):  # trt.X | None
            return self.annotation(node.left)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "trt":
            cls = getattr(self.probe.trt, node.attr, None)
            if cls is None:
                self.report(f"annotation trt.{node.attr} names no TensorRT class")
                return None
            return T("instance", cls)
        return None

    def report(self, message: str) -> None:
        if self.record:
            self.probe.problems.append(f"{self.where}: {message}")

    # -- statements -------------------------------------------------------------------------------------------------
    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:  # nested functions: own scope, same module
        inner = FunctionWalker(self.probe, f"{self.where}.{node.name}", self.self_attrs, self.record)
        inner.env = dict(self.env)
        inner.start(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        typ = self.typeof(node.value)
        for target in node.targets:
            self.bind(target, typ)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        typ = self.typeof(node.value) if node.value is not None else None
        self.bind(node.target, self.annotation(node.annotation) or typ)

    def bind(self, target: ast.expr, typ: T | None) -> None:
        if isinstance(target, ast.Name):
            self.env[target.id] = typ
        elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
            if typ is not None:
                self.self_attrs[target.attr] = typ
        else:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Name):
                    self.env[sub.id] = None
            self.generic_visit(target)

    def visit_Expr(self, node: ast.Expr) -> None:
        self.typeof(node.value)

    def generic_visit(self, node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.typeof(child)
            else:
                self.visit(child)

    # -- expressions ------------------------------------------------------------------------------------------------
    def typeof(self, node: ast.expr, called: bool = False) -> T | None:
        """The inferred type of `node`, checking every TensorRT attribute and call inside it."""
        if isinstance(node, ast.Name):
            return T("module") if node.id == "trt" else self.env.get(node.id)
        if isinstance(node, ast.Constant):
            return T("literal", node.value) if node.value is not None else None
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "self" and node.attr in self.self_attrs:
                return self.self_attrs[node.attr]
            owner = self.typeof(node.value)
            if owner is None or owner.kind == "literal" or owner.kind == "function":
                return None
            if not self.record:
                return self.quiet_attr(owner, node.attr)
            return self.probe.attr_type(owner, node.attr, node, called, f"{self.where}:{node.lineno}")
        if isinstance(node, ast.Call):
            return self.call(node)
        for child in ast.iter_child_nodes(node):  # comprehensions, operators, f-strings ...: check inside
            if isinstance(child, ast.expr):
                self.typeof(child)
            elif isinstance(child, ast.comprehension):
                self.typeof(child.iter)
                self.bind(child.target, None)
                for cond in child.ifs:
                    self.typeof(cond)
        return None

    def quiet_attr(self, owner: T, attr: str) -> T | None:
        probe, recorded = self.probe, (set(self.probe.checked), list(self.probe.problems))
        typ = probe.attr_type(owner, attr, None, True, "")  # type: ignore[arg-type]
        probe.checked, probe.problems = recorded
        return typ

    def call(self, node: ast.Call) -> T | None:
        args = [self.typeof(a) for a in node.args if not isinstance(a, ast.Starred)]
        keywords = {k.arg: self.typeof(k.value) for k in node.keywords if k.arg is not None}
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            self.typeof(node.func, called=True)
            return None
        func = node.func
        if isinstance(func, ast.Name) and func.id == "bytes" and len(args) == 1:
            self.check_buffer(args[0], node)
        if not isinstance(func, ast.Attribute):
            self.typeof(func, called=True)
            return None
        owner = self.typeof(func.value)
        typ = self.typeof(func, called=True)
        if owner is None or owner.kind in ("literal", "function") or not self.record:
            return self.returned(owner, func.attr, typ)
        where = f"{self.where}:{node.lineno}"
        probe = self.probe
        label = f"trt.{func.attr}" if owner.kind == "module" else f"{owner.name()}.{func.attr}"
        if owner.kind == "instance" and not self.is_method(owner, func.attr):
            return typ  # missing, or a property: attr_type has reported it
        if owner.kind == "instance":  # a method: check the call
            sig = probe.check_call(label, probe.signatures(owner, func.attr), len(args), keywords, args, where)
            return probe.resolve(sig.returns) if sig else None
        if typ is not None and typ.kind == "class":  # a constructor
            probe.check_call(f"{label}", probe.signatures(typ, "__init__"), len(args), keywords, args, where)
            return T("instance", typ.obj)
        if typ is not None and typ.kind == "function":
            probe.check_call(
                label,
                python_signature(typ.obj, False) or pybind_signatures(typ.obj.__doc__, func.attr, False),
                len(args),
                keywords,
                args,
                where,
            )
            return None
        return None

    def check_buffer(self, arg: T | None, node: ast.Call) -> None:
        """bytes(x) of a TensorRT object (IHostMemory) needs the buffer protocol on its type."""
        if not self.record or arg is None or arg.kind != "instance":
            return
        label = f"bytes({arg.name()})"
        if supports_buffer(arg.obj):
            self.probe.checked.add(label)
        else:
            self.report(f"{label} at line {node.lineno}: {arg.name()} does not support the buffer protocol")

    @staticmethod
    def is_method(owner: T, attr: str) -> bool:
        if not hasattr(owner.obj, attr):
            return False
        return not isinstance(inspect.getattr_static(owner.obj, attr), property)

    def visit_For(self, node: ast.For) -> None:
        self.typeof(node.iter)
        self.bind(node.target, None)
        for stmt in [*node.body, *node.orelse]:
            self.visit(stmt)

    def returned(self, owner: T | None, attr: str, typ: T | None) -> T | None:
        """Return type of a call in the quiet first pass (no reports)."""
        if owner is None or owner.kind in ("literal", "function"):
            return None
        if typ is not None and typ.kind == "class":
            return T("instance", typ.obj)
        if owner.kind == "instance" and self.is_method(owner, attr):
            sigs = self.probe.signatures(owner, attr)
            return self.probe.resolve(sigs[0].returns) if sigs else None
        return None


def supports_buffer(cls: type) -> bool:
    """Whether instances of `cls` export the buffer protocol (its PyTypeObject has tp_as_buffer), without an instance.

    tp_as_buffer is the 21st pointer-sized slot of PyTypeObject in CPython 3.8-3.13;
    the layout is confirmed on bytes (has it) and int (has not) before it is trusted.
    """
    import ctypes

    def slot(t: type) -> int:
        return ctypes.c_void_p.from_address(id(t) + 20 * ctypes.sizeof(ctypes.c_void_p)).value or 0

    if not slot(bytes) or slot(int):
        raise RuntimeError("unexpected PyTypeObject layout: cannot check the buffer protocol")
    return bool(slot(cls))


def trt_bindings_problems(tree: ast.Module, where: str) -> list[str]:
    """`trt` may only be bound by require_tensorrt() / require("tensorrt"), a parameter, or a TYPE_CHECKING import."""
    problems = []
    for node in ast.walk(tree):
        binds_trt = isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "trt" for t in node.targets
        )
        if binds_trt and not _is_tensorrt_import(node.value):
            problems.append(f"{where}:{node.lineno}: trt is bound to something other than require_tensorrt()")
    return problems


def _is_tensorrt_import(value: ast.expr) -> bool:
    """require_tensorrt() or require("tensorrt")."""
    if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)):
        return False
    if value.func.id == "require_tensorrt":
        return True
    return value.func.id == "require" and [getattr(a, "value", None) for a in value.args] == ["tensorrt"]


def _relative(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def check_file(probe: Probe, path: Path, root: Path) -> bool:
    """Walk one module; False if it does not use `trt` at all."""
    tree = ast.parse(path.read_text(), str(path))
    if not any(isinstance(n, ast.Name) and n.id == "trt" for n in ast.walk(tree)):
        return False
    where = _relative(path, root)
    probe.problems.extend(trt_bindings_problems(tree, where))
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            methods = [m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))]
            self_attrs: dict[str, T] = {}
            for _ in range(2):  # infer self.x types first (a method may use what another one set)
                for method in methods:
                    FunctionWalker(probe, f"{where}:{node.name}.{method.name}", self_attrs, record=False).start(method)
            for method in methods:
                FunctionWalker(probe, f"{where}:{node.name}.{method.name}", self_attrs, record=True).start(method)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            FunctionWalker(probe, f"{where}:{node.name}", {}, record=True).start(node)
    return True


def main(files: list[str]) -> dict:
    import tensorrt_bindings

    sys.modules.setdefault("tensorrt", tensorrt_bindings)  # what the real `tensorrt` install provides
    from edge_emotion.backends.engine_file import require_tensorrt

    trt = require_tensorrt()
    probe = Probe(trt)
    root = Path.cwd()
    walked = [_relative(Path(f).resolve(), root) for f in files if check_file(probe, Path(f).resolve(), root)]
    return {
        "version": trt.__version__,
        "import_ok": trt is tensorrt_bindings,
        "files": walked,
        "checked": sorted(probe.checked),
        "problems": probe.problems,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
