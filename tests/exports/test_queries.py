"""The queries' Python side on plain rows: a fake ``run_query`` stands in for the cursor."""

from __future__ import annotations

from evaluation.agreement import JudgementRow, task_agreement
from exports import queries
from exports.request import parse_request

# (judgement, task, annotator, ranking, unsure), ordered by task as the query orders them.
JUDGEMENTS = [
    (1, 10, 100, [[1], [2, 3]], False),
    (2, 10, 101, [[1], [2], [3]], False),  # 2 of 3 pairs as judgement 1
    (3, 20, 100, [[4], [5]], False),
    (4, 20, 101, [[4], [5]], False),  # all agree
    (5, 20, 102, [[5], [4]], True),  # unsure: never counts
    (6, 30, 100, [[6], [7]], False),  # judged once: no agreement
]


def fake_run_query(sql: str, params: dict) -> list[tuple]:
    assert "ORDER BY t.id" in sql and params["project"] == 1
    return JUDGEMENTS


def agreed(minimum: float) -> list[int]:
    request = parse_request({"kind": "pairs", "filters": {"min_agreement": minimum}})
    return queries.agreed_tasks(request, 1, fake_run_query)


def test_agreed_tasks_are_the_ones_evaluation_agreement_puts_at_the_minimum_or_above():
    rows = [JudgementRow(j, t, a, ranking, {}, [], unsure=u) for j, t, a, ranking, u in JUDGEMENTS]
    assert task_agreement(rows) == {10: 2 / 3, 20: 1.0}

    assert agreed(0.0) == [10, 20]
    assert agreed(2 / 3) == [10, 20]
    assert agreed(0.7) == [20]


def test_the_row_queries_keep_only_the_agreed_tasks():
    request = parse_request({"kind": "rankings", "filters": {"min_agreement": 0.5}})

    ((sql, params),) = queries.row_queries(request, 1, [20])

    assert "t.id = ANY(%(agreed)s)" in sql and params["agreed"] == [20]
    assert f"JOIN {queries.JUDGEMENTS} j ON" in sql  # the model's table, named by its _meta


def test_ranks_are_dense_and_shared_by_ties():
    assert queries.ranks_of([[7], [3, 9], [1]], [1, 3, 7, 9]) == [3, 2, 1, 2]
