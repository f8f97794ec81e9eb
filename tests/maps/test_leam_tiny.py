"""LEAM on a network small enough to work out by hand; every expected value is a literal.

The network is ``TinyEmbedder`` (tests/helpers/tiny_models.py): for the image
x = [[2, 1, 1], [0, 0, 1], [2, 2, 0]] its ``conv`` layer gives

    A0 = [[2, 1, 1],      A1 = [[0, 1, 1],
          [0, 0, 1],            [2, 2, 1],
          [2, 2, 0]]            [0, 0, 2]]

and the embedding f = (top row of A0 + left column of A1, bottom row of A0 + right column of A1) = (6, 8).
``conv`` keeps the 3x3 size, so upsampling to the input size is the identity and the raw maps below
are exactly the layer maps.

Gradient of the cosine:  d cos(f, e) / df = e / (|f| |e|) - (f.e) f / (|f|^3 |e|),  |f| = 10.

  image 0, e = (1, 0):  cos = 6/10 = 0.6
      d cos/df = (1, 0)/10 - 6 (6, 8)/1000 = (0.1 - 0.036, -0.048) = (0.064, -0.048)
      dL/df    = -(d cos/df)                                          = (-0.064, 0.048)
  image 1, e = (0, 3):  cos = 24/30 = 0.8      (the reference's norm does not matter)
      d cos/df = (0, 3)/30 - 24 (6, 8)/3000 = (0, 0.1) - (0.048, 0.064) = (-0.048, 0.036)
      dL/df    =                                                        (0.048, -0.036)

f = W vec(A), so dL/dA[c, i, j] = sum_d dL/df_d W[d, c, i, j]: channel 0 gets dL/df1 on its top row and
dL/df2 on its bottom row, channel 1 gets dL/df1 on its left column and dL/df2 on its right column.

  image 0, direction "loss":  g0 = [[-.064, -.064, -.064], [0, 0, 0], [.048, .048, .048]]
                              g1 = [[-.064, 0, .048], [-.064, 0, .048], [-.064, 0, .048]]
      ReLU(g) keeps 0.048 on A0's bottom row and A1's right column:
      map = 0.048 * [[0, 0, 1], [0, 0, 1], [2, 2, 0 + 2]] = [[0, 0, .048], [0, 0, .048], [.096, .096, .096]]
  image 0, "similarity" (g → -g): ReLU(-g) keeps 0.064 on A0's top row and A1's left column:
      map = 0.064 * [[2 + 0, 1, 1], [2, 0, 0], [0, 0, 0]] = [[.128, .064, .064], [.128, 0, 0], [0, 0, 0]]
  image 1, "loss": dL/df has the opposite signs, so ReLU(g) keeps 0.048 on the top row / left column:
      map = 0.048 * [[2, 1, 1], [2, 0, 0], [0, 0, 0]] = [[.096, .048, .048], [.096, 0, 0], [0, 0, 0]]
  image 1, "similarity": 0.036 on the bottom row / right column:
      map = 0.036 * [[0, 0, 1], [0, 0, 1], [2, 2, 2]] = [[0, 0, .036], [0, 0, .036], [.072, .072, .072]]

The two directions select opposite regions; min-max normalisation divides by the map's maximum here
(every map's minimum is 0).
"""

from __future__ import annotations

import pytest
import torch

from leam.errors import LayerError
from leam.maps.aggregate import aggregate_maps, minmax_normalize
from leam.maps.hooks import capture_activations, layer_shapes
from leam.maps.leam import LEAM, layer_map, objective
from tests.helpers.tiny_models import ReusedLayerNet, tiny_embedder, tiny_images

REFERENCES = torch.tensor([[1.0, 0.0], [0.0, 3.0]])

GRAD_LOSS = [  # dL/dA, (image, channel, row, column)
    [
        [[-0.064, -0.064, -0.064], [0.0, 0.0, 0.0], [0.048, 0.048, 0.048]],
        [[-0.064, 0.0, 0.048], [-0.064, 0.0, 0.048], [-0.064, 0.0, 0.048]],
    ],
    [
        [[0.048, 0.048, 0.048], [0.0, 0.0, 0.0], [-0.036, -0.036, -0.036]],
        [[0.048, 0.0, -0.036], [0.048, 0.0, -0.036], [0.048, 0.0, -0.036]],
    ],
]
RAW = {
    "loss": [
        [[0.0, 0.0, 0.048], [0.0, 0.0, 0.048], [0.096, 0.096, 0.096]],
        [[0.096, 0.048, 0.048], [0.096, 0.0, 0.0], [0.0, 0.0, 0.0]],
    ],
    "similarity": [
        [[0.128, 0.064, 0.064], [0.128, 0.0, 0.0], [0.0, 0.0, 0.0]],
        [[0.0, 0.0, 0.036], [0.0, 0.0, 0.036], [0.072, 0.072, 0.072]],
    ],
}
BOTTOM_RIGHT = [[0.0, 0.0, 0.5], [0.0, 0.0, 0.5], [1.0, 1.0, 1.0]]
TOP_LEFT = [[1.0, 0.5, 0.5], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
NORMALISED = {"loss": [BOTTOM_RIGHT, TOP_LEFT], "similarity": [TOP_LEFT, BOTTOM_RIGHT]}


def close(actual: torch.Tensor, expected: list) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected), rtol=0, atol=1e-6)


def test_gradient_of_one_minus_cosine_matches_hand_derivation():
    net = tiny_embedder()
    x = tiny_images(2).requires_grad_(True)
    with capture_activations(net, ["conv"]) as acts:
        emb = net(x)
    (grad,) = torch.autograd.grad(objective(emb, REFERENCES, "loss").sum(), acts["conv"])
    close(emb.detach(), [[6.0, 8.0], [6.0, 8.0]])
    close(grad, GRAD_LOSS)


@pytest.mark.parametrize("direction", ["loss", "similarity"])
def test_engine_raw_and_normalised_maps(direction):
    result = LEAM(tiny_embedder(), ["conv"], direction)(tiny_images(2), REFERENCES)
    assert result.direction == direction and result.layers == ["conv"]
    close(result.cosine, [0.6, 0.8])
    close(result.embeddings, [[6.0, 8.0], [6.0, 8.0]])
    close(result.raw["conv"], RAW[direction])
    close(result.maps["conv"], NORMALISED[direction])


def test_directions_select_opposite_regions():
    engines = {d: LEAM(tiny_embedder(), ["conv"], d) for d in ("loss", "similarity")}
    loss, sim = (engines[d](tiny_images(2), REFERENCES).raw["conv"] for d in ("loss", "similarity"))
    # ReLU(g) and ReLU(-g) keep disjoint entries: one direction reads the top row / left column, the
    # other the bottom row / right column; the maps meet only at (0, 2), where the top row of A0 and
    # the right column of A1 cross.
    assert ((loss > 0) & (sim > 0)).nonzero().tolist() == [[0, 0, 2], [1, 0, 2]]
    assert ((loss > 0) | (sim > 0)).all(dim=0).sum() == 8  # together they cover all but (1, 1)


def test_layer_map_literal():
    # channel 0: ReLU(g0) = [[2, 1], [0, 5]],  ReLU(g0) * A0 = [[2, -2], [0, 0]]
    # channel 1: ReLU(g1) = [[0, 1], [2, .5]], ReLU(g1) * A1 = [[0, 1], [-2, 1]]
    # sum = [[2, -1], [-2, 1]] → ReLU → [[2, 0], [0, 1]]
    # (without the inner ReLU, g1 = -3 at (0, 0) would add -12; without the outer one -1 and -2 stay)
    activation = torch.tensor([[[[1.0, -2.0], [3.0, 0.0]], [[4.0, 1.0], [-1.0, 2.0]]]])
    gradient = torch.tensor([[[[2.0, 1.0], [-1.0, 5.0]], [[-3.0, 1.0], [2.0, 0.5]]]])
    close(layer_map(activation, gradient), [[[2.0, 0.0], [0.0, 1.0]]])


def test_minmax_normalize_literal():
    maps = torch.tensor(
        [
            [[1.0, 3.0], [5.0, 2.0]],  # lo 1, span 4
            [[-2.0, -2.0], [0.0, 2.0]],  # lo -2, span 4
            [[7.0, 7.0], [7.0, 7.0]],  # constant → zeros
        ]
    )
    expected = [[[0.0, 0.5], [1.0, 0.25]], [[0.0, 0.0], [0.5, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]
    close(minmax_normalize(maps), expected)


def test_aggregate_literal():
    maps = {
        "a": torch.tensor([[[0.0, 0.5], [1.0, 0.25]]]),
        "b": torch.tensor([[[1.0, 0.0], [0.5, 0.75]]]),
    }
    close(aggregate_maps(maps, "mean"), [[[0.5, 0.25], [0.75, 0.5]]])
    close(aggregate_maps(maps, "max"), [[[1.0, 0.5], [1.0, 0.75]]])
    with pytest.raises(ValueError, match="expected aggregation in"):
        aggregate_maps(maps, "median")
    with pytest.raises(ValueError, match="no maps"):
        aggregate_maps({}, "mean")


def test_result_aggregate_of_one_layer_is_that_layer():
    result = LEAM(tiny_embedder(), ["conv"])(tiny_images(2), REFERENCES)
    close(result.aggregate("mean"), NORMALISED["loss"])
    close(result.aggregate("max"), NORMALISED["loss"])


def test_one_reference_for_the_whole_batch():
    result = LEAM(tiny_embedder(), ["conv"])(tiny_images(2), torch.tensor([1.0, 0.0]))
    close(result.raw["conv"], [RAW["loss"][0], RAW["loss"][0]])


def test_layer_that_runs_twice_is_refused_and_unhooked():
    net = ReusedLayerNet()
    with pytest.raises(LayerError, match="runs more than once"):
        LEAM(net, ["conv"])(torch.ones(1, 1, 2, 2), torch.ones(1, 4))
    assert all(not m._forward_hooks for m in net.modules())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"direction": "gradient"}, "expected direction in"), ({"layers": []}, "at least one layer")],
)
def test_engine_arguments_checked(kwargs, message):
    args = {"net": tiny_embedder(), "layers": ["conv"], **kwargs}
    with pytest.raises(ValueError, match=message):
        LEAM(**args)


def test_layer_shapes_of_a_one_channel_net():
    assert layer_shapes(tiny_embedder(), (3, 3)) == [("conv", (2, 3, 3))]


def test_early_aggregation_is_the_mean_of_the_first_three_layers():
    import torch

    from leam.maps import aggregate_maps

    maps = {f"l{i}": torch.full((1, 2, 2), float(i)) for i in range(5)}
    assert aggregate_maps(maps, "early").flatten().tolist() == [1.0] * 4  # (0 + 1 + 2) / 3
    assert aggregate_maps(dict(list(maps.items())[:2]), "early").flatten().tolist() == [0.5] * 4
    assert aggregate_maps(maps, "max").flatten().tolist() == [4.0] * 4
