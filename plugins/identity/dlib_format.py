"""A reader for dlib's binary serialization format, enough to load a trained ``dlib::dnn`` net.

Written from dlib's documented behaviour (``dlib/serialize.h``, ``dlib/float_details.h``,
``dlib/cuda/tensor.h``, ``dlib/dnn/{core,input,layers,loss}.h``):

* integers: one control byte (low nibble = number of payload bytes, bit 7 = negative)
  followed by that many little-endian magnitude bytes;
* floats/doubles: ``float_details`` = integer mantissa then integer exponent,
  value ``mantissa * 2**exponent`` (exponents 32000/32001/32002 mean +inf/-inf/nan);
* bools: the ASCII characters ``'0'``/``'1'``;
* strings: integer length then raw bytes;
* ``resizable_tensor``: int version (2), 4 integer dims (n, k, nr, nc) then raw float32 LE;
* ``alias_tensor``: int version (1) then 4 integer dims (shape only, no data).

A network ``add_loss_layer<LOSS, add_layer<L_top, ... add_layer<L_bottom, INPUT>>>`` is written
outside-in: the loss layer's version and details, then each wrapper's version integer from
the top layer down to the bottom one (``add_layer``, ``add_tag_layer`` and ``add_skip_layer``
all write a version first and their sub-network next), then the input layer and each
computational layer's details from the bottom up, each followed by its ``add_layer`` state
(three bools and a few, normally empty, cached tensors). Tag/skip layers write nothing but
their version, so the residual wiring is not recoverable from the file: the network type
(see :mod:`dlib_resnet`) supplies it, exactly as it does for dlib itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["DlibFormatError", "Reader", "Layer", "Network", "parse_network"]


class DlibFormatError(ValueError):
    """The bytes do not follow dlib's serialization format (or use an unsupported layer)."""


_INF, _NINF, _NAN = 32000, 32001, 32002


class Reader:
    """A cursor over the bytes of a dlib-serialized object."""

    def __init__(self, data: bytes, name: str = "<bytes>") -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.name = name

    # -- primitives --------------------------------------------------------------------------
    def _fail(self, what: str) -> DlibFormatError:
        return DlibFormatError(f"{self.name}: {what} at byte {self.pos}")

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def _take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise self._fail(f"unexpected end of data (wanted {n} bytes)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        """A signed or unsigned integer in dlib's variable-length encoding."""
        ctrl = self._take(1)[0]
        size = ctrl & 0x0F
        if size == 0 or size > 8 or (ctrl & 0x70):
            self.pos -= 1
            raise self._fail(f"bad integer control byte 0x{ctrl:02x}")
        value = int.from_bytes(self._take(size), "little")
        return -value if ctrl & 0x80 else value

    def peek_int(self) -> int | None:
        """The next integer without consuming it (None when it is not a valid integer)."""
        pos = self.pos
        try:
            return self.int()
        except DlibFormatError:
            return None
        finally:
            self.pos = pos

    def float(self) -> float:
        """A ``float``/``double`` stored as ``float_details`` (returned as a Python float)."""
        first = self.data[self.pos] if not self.at_end() else 0
        if first & 0x70:
            raise self._fail("old ASCII float format is not supported")
        mantissa, exponent = self.int(), self.int()
        if exponent == _INF:
            return math.inf
        if exponent == _NINF:
            return -math.inf
        if exponent == _NAN:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def bool(self) -> bool:
        ch = bytes(self._take(1))
        if ch not in (b"0", b"1"):
            self.pos -= 1
            raise self._fail(f"bad bool byte {ch!r}")
        return ch == b"1"

    def string(self) -> str:
        n = self.int()
        if n < 0 or n > 1 << 20:
            raise self._fail(f"implausible string length {n}")
        return bytes(self._take(n)).decode("latin-1")

    def tensor(self) -> np.ndarray:
        """A ``resizable_tensor``: float32 array of shape (n, k, nr, nc)."""
        version = self.int()
        if version != 2:
            raise self._fail(f"unexpected resizable_tensor version {version}")
        shape = tuple(self.int() for _ in range(4))
        if any(s < 0 for s in shape):
            raise self._fail(f"negative tensor shape {shape}")
        count = int(np.prod(shape, dtype=np.int64))
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        version = self.int()
        if version != 1:
            raise self._fail(f"unexpected alias_tensor version {version}")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]


# -- layers ------------------------------------------------------------------------------------


@dataclass
class Layer:
    """One deserialized layer: ``kind`` (e.g. ``con``, ``affine``), the version tag read from the
    file, scalar settings in ``meta`` and numeric arrays (float32) in ``arrays``."""

    kind: str
    version: str
    meta: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)

    def __repr__(self) -> str:  # compact
        shapes = {k: tuple(v.shape) for k, v in self.arrays.items()}
        return f"Layer({self.version}, {self.meta}, {shapes})"


def _split(params: np.ndarray, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    """Slice a flat params tensor into consecutive alias-tensor views."""
    flat = params.reshape(-1)
    out, off = [], 0
    for shape in shapes:
        n = int(np.prod(shape, dtype=np.int64))
        if off + n > flat.size:
            raise DlibFormatError(f"params hold {flat.size} values, aliases need more ({shapes})")
        out.append(flat[off:off + n].reshape(shape))
        off += n
    return out


def _read_multipliers(r: Reader, meta: dict) -> None:
    for key in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
        meta[key] = r.float()


def _read_con(r: Reader, version: str) -> Layer:
    if version not in ("con_4", "con_5", "con_6"):
        raise r._fail(f"unsupported convolution version {version!r}")
    params = r.tensor()
    meta = {"num_filters": r.int(), "nr": r.int(), "nc": r.int(),
            "stride_y": r.int(), "stride_x": r.int(), "padding_y": r.int(), "padding_x": r.int()}
    filt, bias = r.alias_tensor(), r.alias_tensor()
    _read_multipliers(r, meta)
    meta["use_bias"] = r.bool() if version in ("con_5", "con_6") else True
    meta["use_relu"] = r.bool() if version == "con_6" else False
    arrays = {}
    has_bias = meta["use_bias"] and int(np.prod(bias)) > 0
    parts = _split(params, filt, bias) if has_bias else _split(params, filt)
    arrays["weight"] = parts[0]
    if has_bias:
        arrays["bias"] = parts[1].reshape(-1)
    return Layer("con", version, meta, arrays)


def _read_fc(r: Reader, version: str) -> Layer:
    if version not in ("fc_2", "fc_3"):
        raise r._fail(f"unsupported fc version {version!r}")
    meta = {"num_outputs": r.int(), "num_inputs": r.int()}
    params = r.tensor()
    wshape, bshape = r.alias_tensor(), r.alias_tensor()
    meta["bias_mode"] = r.int()  # 0: FC_HAS_BIAS, 1: FC_NO_BIAS
    _read_multipliers(r, meta)
    meta["use_bias"] = r.bool() if version == "fc_3" else True
    has_bias = meta["bias_mode"] == 0 and meta["use_bias"] and int(np.prod(bshape)) > 0
    parts = _split(params, wshape, bshape) if has_bias else _split(params, wshape)
    # dlib computes out = in (N x num_inputs) @ W (num_inputs x num_outputs).
    arrays = {"weight": parts[0].reshape(meta["num_inputs"], meta["num_outputs"])}
    if has_bias:
        arrays["bias"] = parts[1].reshape(-1)
    return Layer("fc", version, meta, arrays)


def _read_affine(r: Reader, version: str) -> Layer:
    if version in ("bn_con2", "bn_fc2"):
        return _bn_to_affine(r, version)
    if version not in ("affine_", "affine_2"):
        raise r._fail(f"unsupported affine version {version!r}")
    params = r.tensor()
    gshape, bshape = r.alias_tensor(), r.alias_tensor()
    meta = {"mode": r.int()}  # 0: CONV_MODE (per channel), 1: FC_MODE (per element)
    meta["disabled"] = r.bool() if version == "affine_2" else False
    gamma, beta = _split(params, gshape, bshape)
    return Layer("affine", version, meta, {"gamma": gamma.reshape(-1), "beta": beta.reshape(-1)})


def _bn_to_affine(r: Reader, version: str) -> Layer:
    """A batch-norm layer stored where an ``affine`` layer is expected: dlib converts it to the
    inference-time affine transform (in float32) using the running statistics."""
    params = r.tensor()
    gshape, bshape = r.alias_tensor(), r.alias_tensor()
    r.tensor(), r.tensor()  # means, invstds of the last batch (unused)
    running_means, running_vars = r.tensor(), r.tensor()
    meta = {"num_updates": r.int(), "window": r.int()}
    _read_multipliers(r, meta)
    eps = np.float32(r.float())
    g, b = _split(params, gshape, bshape)
    gamma = (g.reshape(-1) / np.sqrt(running_vars.reshape(-1) + eps)).astype(np.float32)
    beta = (b.reshape(-1) - gamma * running_means.reshape(-1)).astype(np.float32)
    meta.update(mode=0 if version == "bn_con2" else 1, disabled=False, from_bn=True)
    return Layer("affine", version, meta, {"gamma": gamma, "beta": beta})


def _read_pool(kind: str):
    def read(r: Reader, version: str) -> Layer:
        if version != f"{kind}_2":
            raise r._fail(f"unsupported {kind} version {version!r}")
        meta = {"nr": r.int(), "nc": r.int(), "stride_y": r.int(), "stride_x": r.int(),
                "padding_y": r.int(), "padding_x": r.int()}
        return Layer(kind, version, meta)

    return read


def _read_relu(r: Reader, version: str) -> Layer:
    if version not in ("relu_", "relu_2"):
        raise r._fail(f"unsupported relu version {version!r}")
    return Layer("relu", version, {"disabled": r.bool() if version == "relu_2" else False})


def _read_add_prev(r: Reader, version: str) -> Layer:
    return Layer("add_prev", version)


_LAYER_READERS = {
    "con_": _read_con, "fc_": _read_fc, "affine_": _read_affine, "bn_con2": _read_affine,
    "bn_fc2": _read_affine, "max_pool_": _read_pool("max_pool"), "avg_pool_": _read_pool("avg_pool"),
    "relu_": _read_relu, "add_prev_": _read_add_prev,
}


def _reader_for(version: str):
    for prefix, fn in _LAYER_READERS.items():
        if version == prefix or version.startswith(prefix):
            return fn
    return None


def _read_input(r: Reader) -> Layer:
    version = r.string()
    if version not in ("input_rgb_image_sized", "input_rgb_image"):
        raise r._fail(f"unsupported input layer {version!r}")
    meta = {"avg_red": r.float(), "avg_green": r.float(), "avg_blue": r.float()}
    if version == "input_rgb_image_sized":
        meta["nr"], meta["nc"] = r.int(), r.int()
    return Layer("input", version, meta)


def _read_loss(r: Reader) -> Layer:
    version = r.string()
    if version == "loss_metric_":
        return Layer("loss_metric", version, {"margin": 0.1, "dist_thresh": 0.75})
    if version == "loss_metric_2":
        return Layer("loss_metric", version, {"margin": r.float(), "dist_thresh": r.float()})
    raise r._fail(f"unsupported loss layer {version!r}")


@dataclass
class Network:
    """A parsed net: ``loss`` and ``input`` layers plus computational ``layers`` bottom-up
    (input side first). ``wrappers`` is the number of version headers (add/tag/skip layers)."""

    loss: Layer
    input: Layer
    layers: list[Layer]
    wrappers: int

    def kinds(self) -> list[str]:
        return [layer.kind for layer in self.layers]


def parse_network(data: bytes | str | Path, name: str | None = None) -> Network:
    """Parse a serialized ``add_loss_layer`` network (e.g. dlib's face-recognition ``.dat``)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        name = name or str(data)
        data = Path(data).read_bytes()
    r = Reader(bytes(data), name or "<bytes>")
    if r.int() != 1:
        raise r._fail("not a dlib add_loss_layer (version != 1)")
    loss = _read_loss(r)
    # Version headers of every wrapper from the top down. They are all small (1..3); the first
    # integer that is larger is the length of the input layer's name.
    headers = []
    while True:
        v = r.peek_int()
        if v is None:
            raise r._fail("expected a layer version or the input layer")
        if v > 3:
            break
        headers.append(r.int())
    if not headers:
        raise r._fail("no layers found")
    bottom_version = headers[-1]
    inp = _read_input(r)
    layers: list[Layer] = []
    while not r.at_end():
        version = r.string()
        reader = _reader_for(version)
        if reader is None:
            raise r._fail(f"unsupported layer type {version!r}")
        layers.append(reader(r, version))
        for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, output disabled
            r.bool()
        r.tensor(), r.tensor()  # x_grad, cached_output
        if len(layers) == 1:  # the add_layer right above the input layer
            r.tensor()  # grad_final
            if bottom_version >= 3:
                r.int()  # sample_expansion_factor
        elif not r.at_end() and r.peek_int() == 2:
            # add_layer version 2 also stores params_grad; a following layer would start with
            # its name's length instead (always >= 4).
            r.tensor()
    return Network(loss, inp, layers, len(headers))
