"""BestSoFar: the archive every strategy reports from."""

from discovery.strategy import BestSoFar, Node


def node(ref, score, status="ok"):
    return Node(ref=ref, code=f"x = {ref}", score=score, status=status)


def test_keeps_the_best_ok_node_by_direction_and_ignores_failures():
    low = BestSoFar("minimize")
    high = BestSoFar("maximize")
    for archive in (low, high):
        assert archive.offer(None, (0,)) is False and archive.node is None
        archive.offer(node(1, 5.0), (1,))
        archive.offer(node(2, None, "error"), (2,))
        archive.offer(node(3, 3.0), (3,))
        archive.offer(node(4, 7.0), (4,))
    assert low.node.ref == 3 and high.node.ref == 4


def test_ties_go_to_the_smallest_key_whatever_the_arrival_order():
    for order in ([(5, (2, 0)), (6, (1, 3))], [(6, (1, 3)), (5, (2, 0))]):
        archive = BestSoFar("maximize")
        for ref, key in order:
            archive.offer(node(ref, 1.0), key)
        assert archive.node.ref == 6 and archive.key == (1, 3)
