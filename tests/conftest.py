import pytest
import torch
import torch.utils._python_dispatch
import torch.utils._pytree
from torch.func import functional_call, grad, hessian, jacrev

from eoslib.models import cnn, mlp
from eoslib.objective import Objective

# One intra-op thread: these tensors are small, and on a loaded 2-core machine two threads per process
# oversubscribe the cores (measured: the measurement-hook test took 102 s with 2 threads, 7 s with 1).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_objective(loss="ce", n: int = 7, d: int = 5, width: int = 6, depth: int = 3, q: int = 3,
                   chunk_size=None, activation: str = "elu", seed: int = 1) -> Objective:
    """A float64 MLP objective small enough for dense oracles (P ≈ 100). ``loss``: a name or a Loss object."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, q, (n,), generator=g)
    return Objective(mlp(d, width, depth, q, activation=activation, seed=seed, dtype=torch.float64), X, y, loss=loss,
                     chunk_size=chunk_size)


def tiny_cnn_objective(loss="ce", n: int = 7, side: int = 5, channels: int = 2, depth: int = 2, q: int = 3,
                       chunk_size=None, seed: int = 1) -> Objective:
    """A float64 ``eoslib.models.cnn`` objective on 1 × side × side images (P = 85 with the defaults)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, side * side, generator=g, dtype=torch.float64)
    y = torch.randint(0, q, (n,), generator=g)
    model = cnn((1, side, side), channels=channels, depth=depth, out_dim=q, seed=seed, dtype=torch.float64)
    return Objective(model, X, y, loss=loss, chunk_size=chunk_size)


#: the architectures every curvature oracle test runs on (add a model here and the oracle grid covers it)
ARCHS = {"mlp": tiny_objective, "cnn": tiny_cnn_objective}


# ------------------------------------------------------------------ dense float64 oracles


def quadratic(n: int = 3, d: int = 6, q: int = 2, seed: int = 0, scale: float = 1.0) -> Objective:
    """MSE on a bias-free linear model (float64): L is exactly quadratic in θ, with a Hessian of rank n·q < P = d·q
    (so L* = 0 is reachable); inputs N(0, scale²). With ``scale=3`` the Hessian eigenvalues are 0, 1.60, 18.6, 27.3
    (each twice)."""
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Linear(d, q, bias=False, dtype=torch.float64)
    with torch.no_grad():
        model.weight.copy_(torch.randn(q, d, generator=g, dtype=torch.float64))
    X = scale * torch.randn(n, d, generator=g, dtype=torch.float64)
    return Objective(model, X, torch.randint(0, q, (n,), generator=g), loss="mse")


def hessian_eigh(ob: Objective):
    """Dense Hessian of a (quadratic) objective at θ₀ and its eigendecomposition, eigenvalues below 1e-12 set to 0."""
    A = ob.hvp(ob.theta0, torch.eye(ob.P, dtype=torch.float64))
    lam, V = torch.linalg.eigh((A + A.T) / 2)
    return torch.where(lam.abs() < 1e-12, torch.zeros_like(lam), lam), V


def exact_flow(ob: Objective, theta0, t: float):
    """The exact gradient flow of a quadratic from θ₀ for time t: θ₀ − V φ₁(Λ, t) Vᵀ ∇L(θ₀), with
    φ₁(λ, t) = (1 − e^{−λt})/λ written out here (and t where λ = 0), independent of the solvers' ``phi1``."""
    lam, V = hessian_eigh(ob)
    safe = torch.where(lam == 0, torch.ones_like(lam), lam)
    phi = torch.where(lam == 0, torch.full_like(lam, t), -torch.expm1(-safe * t) / safe)
    return theta0 - V @ (phi * (V.T @ ob.grad(theta0)))


def oracle_loss(criterion):
    """Per-example l(z, y) of a Loss for one output row z (Q) and label y (0-dim), written here independently of
    eoslib.losses for the built-in losses (CE as logsumexp(z) − z_y, MSE with one_hot); any other loss
    falls back to its own ``value_sum`` on one row (the oracles then check its derivatives, not its value)."""
    if criterion.name == "ce":
        return lambda z, y: torch.logsumexp(z, 0) - z[y]
    if criterion.name == "mse":
        return lambda z, y: 0.5 * (z - torch.nn.functional.one_hot(y, z.shape[0]).to(z.dtype)).pow(2).sum()
    return lambda z, y: criterion.value_sum(z[None], y[None])


def dense_loss(ob: Objective):
    """L(θ) = (1/N) Σ_i l(f(x_i, θ), y_i) from :func:`oracle_loss`, example by example."""
    l = oracle_loss(ob.criterion)

    def L(theta):
        z = functional_call(ob.model, ob.unflatten(theta), (ob.X,))
        return sum(l(z[i], ob.y[i]) for i in range(ob.N)) / ob.N

    return L


def dense_jacobian_and_criterion_hessian(ob: Objective, theta):
    """Dense oracle pieces of G = (1/N) Σ J_iᵀ D_i J_i: J (N × Q × P) by jacrev and D_i = ∇²_z l(z_i, y_i)
    (N × Q × Q) by torch.func.hessian of the per-example :func:`oracle_loss` with respect to the output z."""
    J = jacrev(lambda t: functional_call(ob.model, ob.unflatten(t), (ob.X,)))(theta)
    z, l = ob.outputs(theta).detach(), oracle_loss(ob.criterion)
    D = torch.stack([hessian(l)(z[i], ob.y[i]) for i in range(ob.N)])
    return J, D


def dense_ggn(ob: Objective, theta):
    """G = (1/N) Σ_i J_iᵀ D_i J_i from :func:`dense_jacobian_and_criterion_hessian`."""
    J, D = dense_jacobian_and_criterion_hessian(ob, theta)
    return torch.einsum("nqp,nqr,nrs->ps", J, D, J) / ob.N


def dense_residual(ob: Objective, theta):
    """H = (1/N) Σ_i Σ_q (∂l/∂z_q)(z_i, y_i) ∇²_θ f_q(x_i, θ): the per-example, per-output Hessians of the
    network (N × Q × P × P, torch.func.hessian) weighted by the output gradient of :func:`oracle_loss`."""
    Hf = hessian(lambda t: functional_call(ob.model, ob.unflatten(t), (ob.X,)))(theta)
    z, l = ob.outputs(theta).detach(), oracle_loss(ob.criterion)
    dl = torch.stack([grad(l)(z[i], ob.y[i]) for i in range(ob.N)])  # N × Q
    return torch.einsum("nq,nqps->ps", dl, Hf) / ob.N


# ------------------------------------------------------------------ a second device on a CPU-only machine
class StubTensor(torch.Tensor):
    """A tensor on the stub device: reports ``device == meta`` but holds real CPU data in ``elem``."""

    @staticmethod
    def __new__(cls, elem: torch.Tensor, stub: "StubDevice"):
        r = torch.Tensor._make_wrapper_subclass(cls, elem.size(), strides=elem.stride(),
                                                storage_offset=elem.storage_offset(), dtype=elem.dtype,
                                                layout=elem.layout, device=StubDevice.device)
        r.elem, r.stub = elem, stub
        return r

    def __repr__(self):
        return f"StubTensor({self.elem!r})"

    def tolist(self):  # a real device copies to the host for this: a sync, allowed and counted
        self.stub.syncs += 1
        return self.elem.tolist()

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        stub = next(a.stub for a in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(a, StubTensor))
        return stub.dispatch(func, args, kwargs or {})


class StubDevice(torch.utils._python_dispatch.TorchDispatchMode):
    """A second device for CPU-only machines: a dispatch mode under which the ``meta`` device holds real data.

    Tensors created with ``device=meta`` (or ``.to(meta)``), and the results of every op on such tensors, are
    :class:`StubTensor`s: they compute on the CPU (bit-identical results) but report ``device.type == "meta"``.
    Like a real accelerator, an op that mixes stub tensors with a CPU tensor of dimension ≥ 1 raises (0-dim
    CPU scalars and cross-device ``copy_`` are allowed, as on CUDA) — so a tensor created without ``device=``
    or moved to the CPU mid-run is caught at the line that does it. Explicit copies to the CPU (``.cpu()``,
    ``.to("cpu")``) are recorded in ``transfers``, host syncs (``.item()``, ``.tolist()``) counted in ``syncs``.

    Usage: ``with StubDevice() as stub: model = stub.module(model); X = stub.put(X); ...``. Autograd,
    double-backward, torch.func vjp/jvp/vmap, eigh, LOBPCG and the solvers' ``.item()``/``.tolist()`` all run.
    Known differences from a real accelerator: ``torch.tensor``/``torch.as_tensor(..., device=meta)`` bypass
    the mode and give data-less meta tensors (the stub then raises where they meet stub tensors); CPU index
    tensors in indexing are refused (CUDA accepts them); a CPU generator with ``device=meta`` is accepted (CUDA
    refuses it); ``.numpy()`` raises, as on CUDA. Every op goes through Python: ~10× slower than the CPU.
    """

    device = torch.device("meta")
    _CPU = torch.device("cpu")
    _MIX_OK = {torch.ops.aten.copy_.default}

    def __init__(self):
        super().__init__()
        self.transfers: list[str] = []
        self.syncs = 0

    def put(self, t: torch.Tensor) -> torch.Tensor:
        """A copy of CPU tensor ``t`` on the stub device."""
        return StubTensor(t.detach().clone(), self)

    @staticmethod
    def data(t: torch.Tensor) -> torch.Tensor:
        """The CPU data of a stub tensor (for comparing results; not a transfer)."""
        assert isinstance(t, StubTensor), f"expected a tensor on the stub device, got {type(t).__name__} on {t.device}"
        return t.elem

    def module(self, m: torch.nn.Module) -> torch.nn.Module:
        """``m`` with its parameters moved to the stub device (in place, as ``Module.to``)."""
        swap = torch.__future__.get_swap_module_params_on_conversion()
        torch.__future__.set_swap_module_params_on_conversion(True)  # parameters become StubTensors
        try:
            with self:
                return m.to(self.device)
        finally:
            torch.__future__.set_swap_module_params_on_conversion(swap)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return self.dispatch(func, args, kwargs or {})

    def dispatch(self, func, args, kwargs):
        originals, on_stub, on_cpu = {}, False, []

        def unwrap(t):
            nonlocal on_stub
            if isinstance(t, StubTensor):
                on_stub = True
                originals[id(t.elem)] = t
                return t.elem
            if isinstance(t, torch.Tensor):
                if t.device == self.device:
                    raise RuntimeError(f"{func}: a real (data-less) meta tensor reached the stub device")
                if t.dim() > 0:
                    on_cpu.append(tuple(t.shape))
            return t

        args, kwargs = torch.utils._pytree.tree_map(unwrap, (args, kwargs))
        if on_stub and on_cpu and func not in self._MIX_OK:
            raise RuntimeError(f"{func}: CPU tensor(s) of shape {on_cpu} met tensors on the stub device — a tensor "
                               f"was created without device= or moved to the CPU")
        make_stub = kwargs.get("device") == self.device
        if make_stub:
            kwargs = dict(kwargs, device=self._CPU)
        leaves = on_stub and kwargs.get("device") == self._CPU and not make_stub
        if func is torch.ops.aten._efficientzerotensor.default:  # forward AD's data-less zeros: real zeros
            func = torch.ops.aten.zeros.default
        out = func(*args, **kwargs)
        if func is torch.ops.aten._local_scalar_dense.default:  # .item()
            self.syncs += 1
            return out
        if leaves:
            self.transfers.append(str(func))
            return out
        if not (on_stub or make_stub):
            return out

        def wrap(t):
            if not isinstance(t, torch.Tensor):
                return t
            o = originals.get(id(t))  # in-place ops return their input: keep its identity (and version counter)
            return o if o is not None else StubTensor(t, self)

        return torch.utils._pytree.tree_map(wrap, out)


class Interrupt(Exception):
    """Raised by the hook of :func:`interrupted_and_resumed` to stop a run the way a kill would."""


def interrupted_and_resumed(make_solver, ob: Objective, until, ck, at_step: int, checkpoint_every: int,
                            hooks=lambda: []):
    """The same run three ways: uninterrupted; interrupted once at step ``at_step`` (checkpointing to ``ck`` every
    ``checkpoint_every`` steps); and resumed from that checkpoint. Returns (uninterrupted, resumed). ``make_solver``
    and ``hooks`` build fresh objects for each run, as a new process would."""
    from eoslib.training import train

    full = train(make_solver(), ob, until=until, hooks=hooks(), progress=False)
    interrupted = False

    def crash(objective, theta, step, t, final):
        nonlocal interrupted
        if step == at_step and not interrupted:
            interrupted = True
            raise Interrupt

    kw = dict(until=until, checkpoint=ck, checkpoint_every=checkpoint_every, progress=False)
    with pytest.raises(Interrupt):
        train(make_solver(), ob, hooks=hooks() + [crash], **kw)
    assert ck.exists()
    resumed = train(make_solver(), ob, hooks=hooks() + [crash], **kw)
    assert not ck.exists()  # a finished run leaves no checkpoint behind
    return full, resumed
