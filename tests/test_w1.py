"""The exact W1 a tracked log records, against POT's exact transport computed here from the points
(an independent distance matrix): in one dimension by the sorted quantile functions, above it by
POT's network simplex on the pooled distance matrix's cross block."""

import numpy as np
import ot
import pytest

import gandy
from gandy.core.metrics.order import order_parameters
from gandy.core.step import advance, start
from gandy.runs.build import build
from gandy.runs.tracking import W1_LINE, W1_METHOD, tracked


@pytest.mark.parametrize("target, start_with", [("two_modes_1d", W1_LINE.split(" ")[0]),
                                               ("ring8", W1_METHOD.split(" ")[0])])
def test_tracked_w1_is_the_exact_transport_cost_of_the_logged_samples(target, start_with):
    sim = build(gandy.load_config(None, [f"target={{name: {target}}}", "particles.n=48", "critic.widths=[16]",
                                         "metrics.divergences=true", "seeds=[0, 1]"]))
    st = start(sim, [0, 1])
    for _ in range(3):
        advance(sim, st)
    ref = sim.target.sample(st.streams["metrics"], sim.loop.reference)
    x = st.x[:2, :ref.shape[1]].double()
    x[1, :12] = x[1, 0]  # tied points in the generated sample
    st.x[:2, :ref.shape[1]] = x.to(st.x.dtype)
    order = order_parameters(st.x[:2], sim.target, None, sim.loop.max_points, st.x0[:2])
    vals, methods = tracked(sim, st, ref, 2, order)
    assert methods["w1"].startswith(start_with)
    for i in range(2):
        a, b = ref[i].double().numpy(), st.x[i, :ref.shape[1]].double().numpy()
        cost = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
        u, v = np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b))
        assert vals["w1"][i] == pytest.approx(ot.emd2(u, v, cost, numItermax=1_000_000), rel=1e-9)
