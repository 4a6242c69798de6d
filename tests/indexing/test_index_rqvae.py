import torch

from ulmrec.indexing.rqvae import RQVAE, kmeans, sinkhorn_assign


def test_forward_shapes_and_losses():
    torch.manual_seed(0)
    model = RQVAE(16, [12], levels=3, codebook_size=8, code_dim=4)
    x_hat, codes, recon, rq = model(torch.randn(10, 16))
    assert x_hat.shape == (10, 16) and codes.shape == (10, 3) and codes.max() < 8
    assert recon.ndim == 0 and rq.item() > 0


def test_residuals_follow_eq3():
    torch.manual_seed(0)
    model = RQVAE(6, [5], levels=3, codebook_size=4, code_dim=3)
    z = torch.randn(7, 3)
    z_q, codes, _, residuals = model.quantizer(z)
    books = model.quantizer.codebooks
    torch.testing.assert_close(residuals[:, 0], z)
    torch.testing.assert_close(residuals[:, 1], z - books[0][codes[:, 0]])
    torch.testing.assert_close(z_q, model.quantizer.lookup(codes))  # straight-through value = sum of codes


def test_kmeans_finds_separated_clusters_and_handles_few_points():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(50, 2) * 0.01 + c for c in (torch.tensor([5.0, 0]), torch.tensor([-5.0, 0]))])
    centres = kmeans(x, 2, 20, g)
    assert sorted(centres[:, 0].round().tolist()) == [-5.0, 5.0]
    assert kmeans(x[:3], 8, 5, g).shape == (8, 2)


def test_sinkhorn_spreads_a_crowded_assignment():
    dist = torch.zeros(64, 8)
    dist[:, 0] = -1.0  # everyone prefers code 0
    dist += torch.rand(64, 8, generator=torch.Generator().manual_seed(0)) * 0.01
    codes = sinkhorn_assign(dist, 0.003, 50)
    assert torch.bincount(codes, minlength=8).max() <= 16
