"""The torchrun environment and the data-parallel sharding (no process group needed)."""

from __future__ import annotations

import pytest
import torch

from mlform.training.distributed import (
    DataParallel,
    DistributedError,
    Group,
    Launch,
    launch_from_env,
)

TORCHRUN = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


@pytest.mark.parametrize("env", [{}, {"WORLD_SIZE": "1", "RANK": "0"}])
def test_a_single_process_is_not_distributed(env: dict[str, str]) -> None:
    assert launch_from_env(env) is None


def test_torchrun_placement() -> None:
    env = {**TORCHRUN, "WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert launch_from_env(env) == Launch(4, 3, 1, 2)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORLD_SIZE": "2", "RANK": "2", **TORCHRUN}, "RANK=2 is outside 0..1"),
        ({"WORLD_SIZE": "2", "RANK": "0"}, "MASTER_ADDR is not set"),
        ({"WORLD_SIZE": "2", **TORCHRUN}, "RANK=None is not a non-negative integer"),
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not a non-negative integer"),
    ],
)
def test_a_malformed_environment_says_what_is_wrong(env: dict[str, str], message: str) -> None:
    with pytest.raises(DistributedError, match=message):
        launch_from_env(env)


def _rank(rank: int, world: int = 3) -> DataParallel:
    return DataParallel(Group(world, rank, "gloo", torch.device("cpu")), seed=5)


@pytest.mark.parametrize("rows", [0, 1, 2, 10, 11])
def test_validation_shares_partition_the_rows(rows: int) -> None:
    shares = [list(range(rows))[_rank(r).validation_share(rows)] for r in range(3)]
    assert [row for share in shares for row in share] == list(range(rows))


def test_epoch_orders_are_equal_sized_cover_the_rows_and_reshuffle() -> None:
    orders = [_rank(r).epoch_order(10, epoch=0).tolist() for r in range(3)]
    assert {len(o) for o in orders} == {4}  # 10 rows, 3 ranks: 2 repeated
    assert {row for order in orders for row in order} == set(range(10))
    assert orders[0] == _rank(0).epoch_order(10, epoch=0).tolist()
    assert orders[0] != _rank(0).epoch_order(10, epoch=1).tolist()
