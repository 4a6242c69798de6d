import numpy as np
import torch

from ulmrec.indexing.pooling import RaggedReviews, ReviewAttentionPooling


def test_eq1_matches_a_dense_softmax():
    torch.manual_seed(0)
    pool = ReviewAttentionPooling(8)
    with torch.no_grad():
        pool.A.normal_()
    reviews = torch.randn(5, 8)
    owners = torch.tensor([0, 0, 0, 2, 2])
    ids = torch.randn(3, 8)
    x = pool(reviews, owners, ids)
    for u, rows in ((0, [0, 1, 2]), (2, [3, 4])):
        alpha = torch.softmax(reviews[rows] @ pool.A @ ids[u], 0)
        torch.testing.assert_close(x[u], (alpha[:, None] * reviews[rows]).sum(0))
    torch.testing.assert_close(x[1], ids[1])  # no reviews: the ID embedding


def test_starts_as_the_mean_and_one_review_is_itself():
    pool = ReviewAttentionPooling(4)
    reviews = torch.randn(3, 4)
    x = pool(reviews, torch.tensor([0, 0, 1]), torch.randn(2, 4))
    torch.testing.assert_close(x[0], reviews[:2].mean(0))
    torch.testing.assert_close(x[1], reviews[2])


def test_ragged_batches_gather_the_right_rows():
    owners = np.array([2, 0, 2, 1, 2])
    emb = np.arange(5, dtype=np.float32)[:, None].repeat(2, 1)
    rr = RaggedReviews(emb, owners, 4)
    rows, local = rr.batch(torch.tensor([2, 3, 0]))
    assert rows[:, 0].tolist() == [0.0, 2.0, 4.0, 1.0] and local.tolist() == [0, 0, 0, 2]
