"""A small real run (issue: core library): an ELU MLP on 512 real digits trained by exponential Euler to
CE loss < 0.1. Along the gradient flow the loss must fall monotonically, and the sharpness must rise well
above its initial value (progressive sharpening). PyTorch-default initialisation: with Xavier gain √2 the
network starts sharp and the sharpness falls instead (measured; see README)."""
import torch

from eoslib.data import load_dataset
from eoslib.models import mlp
from eoslib.objective import Objective
from eoslib.solvers import ExponentialEuler
from eoslib.training import Stop, train


def test_digits_exponential_euler_sharpens():
    ds = load_dataset("digits", n=512, seed=0)
    ob = Objective(mlp(64, 128, 6, 10, activation="elu", init="default", seed=0), ds.X, ds.y, loss="ce")
    res = train(ExponentialEuler(dt_max=0.5), ob, until=Stop(loss=0.1, steps=400), progress=False)
    tb = res.table
    assert res.stopped_by == "loss", f"did not reach CE loss 0.1 in {len(tb)} steps"
    rise = tb.sharpness.max() / tb.sharpness.iloc[0]
    print(f"\ndigits run: {len(tb) - 1} steps, flow time {tb.t.iloc[-1]:.2f}, {res.seconds:.1f}s, "
          f"sharpness {tb.sharpness.iloc[0]:.3g} -> max {tb.sharpness.max():.3g} ({rise:.0f}x), "
          f"eigen matvecs/step {tb.eig_matvecs.mean():.1f}")
    # monotone up to float32 rounding of the loss itself (~1e-7 relative)
    assert (tb.loss.diff().dropna() <= 1e-6 * tb.loss.iloc[:-1].values).all()
    assert rise > 10
    assert torch.isfinite(res.theta).all()
