"""Plan.pass_log: each pass that fired, with the graph before and after it, and its diff."""

from __future__ import annotations

import sluice
from sluice.compiler.pass_log import MAX_OPS, diff, summary
from sluice.compiler.views import draw_pass_change


@sluice.remote
def load(x):
    return x


@sluice.remote
def scale(x):
    return x * 2


@sluice.remote
def add(a, b):
    return a + b


def labels(snapshot, ids) -> list[str]:
    by_id = {op[0]: op[1] for op in snapshot.ops}
    return sorted(by_id[i] for i in ids)


def test_cse_and_fusion_leave_their_before_and_after() -> None:
    with sluice.InputNode() as inp:
        first = scale.bind(load.bind(inp))
        again = scale.bind(load.bind(inp))   # the same work: CSE keeps one
        dag = add.bind(first, again)
    plan = dag.compile()
    assert [c.name for c in plan.pass_log] == list(plan.passes) == ["cse", "fusion"]
    cse, fusion = plan.pass_log
    d = diff(cse)
    assert labels(cse.before, d["removed"]) == ["load", "scale"] and d["added"] == []
    assert len(cse.before.ops) == len(cse.after.ops) + 2
    assert summary(cse).startswith("2 op(s) removed")
    f = diff(fusion)
    assert labels(fusion.after, [op for op, _, _ in f["regrouped"]]) == ["load", "scale"]
    assert not f["added"] and not f["removed"] and not f["edges_added"]
    groups = {op[1]: op[3] for op in fusion.after.ops}
    assert groups["load"] == groups["scale"] != groups["add"]   # fused into one stage
    drawn = draw_pass_change(cse).source
    assert "pass cse: 2 op(s) removed" in drawn and "dashed" in drawn  # removed ops drawn


def test_unoptimized_plans_and_huge_graphs_keep_no_snapshots() -> None:
    with sluice.InputNode() as inp:
        dag = scale.bind(load.bind(inp))
    assert dag.compile(optimize=False).pass_log == ()
    with sluice.InputNode() as inp:
        node = inp
        for _ in range(MAX_OPS):
            node = scale.bind(node)
    plan = node.compile()
    assert "fusion" in plan.passes and plan.pass_log == ()
