"""The compiled loops of engine/lstm_steps.py (numba, imported only where numba is installed).

One call a time step does every element-wise part of that step (float32 only): the forward the
input's part of a few features and the bias (``forward_step_in``), the four gates'
nonlinearities, the cell update, tanh(c_t) and h_t; the backward the gates' local derivatives,
the dL/dc recursion, the four gate gradients, the bias gradient's sum and that of a few input
features' weights (``backward_step_in``).

numba here has no vector maths library (SVML), so ``np.exp`` / ``np.tanh`` in a loop stay scalar
(~5-10 ns each): exp is written out instead (Cephes' expf: n = round(x / ln 2), a degree-6
polynomial of the remainder, 2^n built from its bits), which LLVM vectorises. sigmoid(x) =
1 / (1 + exp(-x)); tanh(x) = 1 - 2 / (exp(2|x|) + 1) with x's sign, and below |x| = 0.625 Cephes'
odd polynomial (no cancellation near 0). Both within 2.5 ulp of the float64 function over
float32's range (tests/test_lstm_steps.py checks them; torch's own sigmoid 2.47 ulp there).
Module-level functions, so that numba caches their machine code on disk.
"""
import llvmlite.ir as ir
from .numba_target import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

jit = numba.njit(cache=True, fastmath={"contract"}, nogil=True, error_model="numpy")
F = np.float32


@intrinsic
def _as_float32(typingctx, bits):
    """The float32 whose bit pattern is the low 32 bits of the integer ``bits`` (a bitcast)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = args[0]
        if bits.bitwidth != 32:
            v = builder.trunc(v, ir.IntType(32))
        return builder.bitcast(v, context.get_value_type(types.float32))
    return types.float32(bits), codegen


@jit
def exp32(x):
    """e^x in float32 for x in [-87, 87] (clamped there: e^-87 = 1.6e-38 is float32's smallest
    normal scale; above, inf would follow)."""
    x = F(87.0) if x > F(87.0) else x
    x = F(-87.0) if x < F(-87.0) else x
    n = np.floor(x * F(1.44269504088896341) + F(0.5))
    r = x - n * F(0.693359375)
    r = r - n * F(-2.12194440e-4)
    p = F(1.9875691500e-4)
    p = p * r + F(1.3981999507e-3)
    p = p * r + F(8.3334519073e-3)
    p = p * r + F(4.1665795894e-2)
    p = p * r + F(1.6666665459e-1)
    p = p * r + F(5.0000001201e-1)
    p = p * (r * r) + r + F(1.0)
    return p * _as_float32((np.int32(n) + 127) << 23)


@jit
def sigmoid32(x):
    return F(1.0) / (F(1.0) + exp32(-x))


@jit
def tanh32(x):
    a = abs(x)
    a = F(10.0) if a > F(10.0) else a   # tanh rounds to 1 in float32 from 9.01 on
    big = F(1.0) - F(2.0) / (exp32(a + a) + F(1.0))
    z = x * x
    small = F(-5.70498872745e-3)
    small = small * z + F(2.06390887954e-2)
    small = small * z - F(5.37397155531e-2)
    small = small * z + F(1.33314422036e-1)
    small = small * z - F(3.33332819422e-1)
    small = small * z * x + x
    return small if a < F(0.625) else (big if x >= 0 else -big)


@jit
def sigmoid_tanh(x, s, th):
    """s = sigmoid(x), th = tanh(x) of a 1-d float32 array (for the tests)."""
    for k in range(x.shape[0]):
        s[k] = sigmoid32(x[k])
        th[k] = tanh32(x[k])


# Each inner loop touches few arrays: LLVM vectorises a loop only where it can check at run time
# that its arrays do not overlap, and gives up above 8 such checks (a loop over all five arrays of
# a step at once stayed scalar: 135 us a step against 15 us). numba checks float division
# for a zero divisor unless error_model="numpy", which kept the divisions scalar too.
@jit
def forward_step(z, c_prev, c, tc, h):
    """One time step after its gate product: z (B, 4H) the pre-activations (i, f, g, o), replaced
    by the gates; c = f c_prev + i g, tc = tanh(c), h = o tc (each (B, H))."""
    H = c.shape[1]
    for b in range(z.shape[0]):
        for j in range(2 * H):
            z[b, j] = sigmoid32(z[b, j])
        for j in range(H):
            z[b, 2 * H + j] = tanh32(z[b, 2 * H + j])
        for j in range(H):
            z[b, 3 * H + j] = sigmoid32(z[b, 3 * H + j])
        for j in range(H):
            c[b, j] = z[b, H + j] * c_prev[b, j] + z[b, j] * z[b, 2 * H + j]
        for j in range(H):
            t = tanh32(c[b, j])
            tc[b, j] = t
            h[b, j] = z[b, 3 * H + j] * t


@jit
def forward_step_in(z, x, w, bias, c_prev, c, tc, h):
    """``forward_step`` after adding the input's part to z: x (B, I) times w (I, 4H) (W_ih^T),
    and the bias (4H,) (a few input features: no pass of its own over the whole sequence)."""
    for b in range(z.shape[0]):
        for k in range(z.shape[1]):
            z[b, k] += bias[k]
        for i in range(x.shape[1]):
            xv = x[b, i]
            for k in range(z.shape[1]):
                z[b, k] += xv * w[i, k]
    forward_step(z, c_prev, c, tc, h)


@jit
def backward_step(gates, f_next, c_prev, tc, dh, dc, grads, db):
    """One time step of the backward, from its dL/dh_t (dh, (B, H): the output's gradient plus
    W_hh^T dL/dgates_(t+1)): dc (B, H) holds dL/dc_(t+1) on entry (times f_next's forget block,
    the next step's gates; None at the last step) and dL/dc_t on return; grads (B, 4H) gets dL/dz
    of the four gates; db (4H,) float64 adds their sum over the batch."""
    H = dh.shape[1]
    for b in range(gates.shape[0]):
        if f_next is None:
            for j in range(H):
                t = tc[b, j]
                dc[b, j] += dh[b, j] * (gates[b, 3 * H + j] * (F(1.0) - t * t))
        else:
            for j in range(H):
                t = tc[b, j]
                dc[b, j] = dc[b, j] * f_next[b, H + j] + dh[b, j] * (gates[b, 3 * H + j] * (F(1.0) - t * t))
        for j in range(H):
            i = gates[b, j]
            grads[b, j] = dc[b, j] * gates[b, 2 * H + j] * (i - i * i)
        for j in range(H):
            f = gates[b, H + j]
            grads[b, H + j] = dc[b, j] * c_prev[b, j] * (f - f * f)
        for j in range(H):
            g = gates[b, 2 * H + j]
            grads[b, 2 * H + j] = dc[b, j] * gates[b, j] * (F(1.0) - g * g)
        for j in range(H):
            o = gates[b, 3 * H + j]
            grads[b, 3 * H + j] = dh[b, j] * tc[b, j] * (o - o * o)
        for k in range(4 * H):
            db[k] += grads[b, k]


@jit
def backward_step_in(gates, f_next, c_prev, tc, dh, dc, grads, db, x, dw):
    """``backward_step``, and dw (I, 4H) float64 adds the input weights' gradient of the step,
    its gate gradients times x (B, I) summed over the batch (transposed: dL/dW_ih^T)."""
    backward_step(gates, f_next, c_prev, tc, dh, dc, grads, db)
    for b in range(grads.shape[0]):
        for i in range(x.shape[1]):
            xv = np.float64(x[b, i])
            for k in range(grads.shape[1]):
                dw[i, k] += grads[b, k] * xv
