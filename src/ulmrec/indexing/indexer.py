"""``UserIndexer``: Eq. 1 pooling + RQ-VAE + uniqueness, with a scikit-learn-like ``fit`` / ``transform``.

    indexer = UserIndexer(levels=4, codebook_size=256, code_dim=32).fit(review_emb, id_emb, owners)
    codes = indexer.transform(review_emb, id_emb, owners)        # (U, 4), every row unique
    tokens = index_tokens(codes)                                  # [["<a_167>", "<b_199>", ...], ...]

``review_emb`` (R, d): one row per review (or fallback text); ``owners`` (R,): the user (0..U-1) of each row;
``id_emb`` (U, d): the embedding of each user's original ID string. Pooling (Eq. 1) and the RQ-VAE are trained
jointly. Fitting is deterministic for a seed on CPU, and resumable: with ``checkpoint_dir`` it saves every
``checkpoint_every`` epochs and a later ``fit`` with the same settings and data continues from there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ulmrec.indexing.config import IndexConfig
from ulmrec.indexing.pooling import RaggedReviews, ReviewAttentionPooling
from ulmrec.indexing.quality import codebook_usage
from ulmrec.indexing.rqvae import RQVAE
from ulmrec.indexing.unique import collision_stats, resolve_collisions
from ulmrec.io import write_safetensors

log = logging.getLogger("ulmrec")

#: The resumable checkpoint in ``checkpoint_dir`` (the stage's partial directory; deleted when the stage ends).
CHECKPOINT_FILE = "rqvae_checkpoint.safetensors"


#: The :class:`IndexConfig` fields that decide the learned indices, in the order of the settings record
#: (:attr:`UserIndexer.params`: ``rqvae.yaml``, the weights' metadata, the resume signature). The other fields
#: are the encoder's and the stage's (texts, threads, checkpoints).
FIT_FIELDS = ("levels", "codebook_size", "code_dim", "hidden_dims", "beta", "pooling", "epochs", "batch_size", "lr",
              "weight_decay", "kmeans_iters", "standardize", "sinkhorn_epsilon", "sinkhorn_iters")


class UserIndexer:
    """Learns unique hierarchical user indices from review and ID embeddings (paper 4.1).

    Fitted attributes: ``model_`` (RQVAE), ``pooling_`` (Eq. 1), ``history_`` (per-epoch losses), ``in_dim_``;
    after :meth:`transform`: ``report_`` (collisions before/after, codebook use, perplexity, errors).
    """

    def __init__(self, config: IndexConfig | None = None, *, seed: int = 42, device: str = "cpu",
                 checkpoint_dir: str | Path | None = None, progress: bool = True, **settings):
        """``config``: the index settings (:class:`IndexConfig`, the one declaration of them; its defaults when
        ``None``); ``settings``: IndexConfig fields on top, sklearn-style (``UserIndexer(levels=3,
        codebook_size=8)``). A positive ``sinkhorn_epsilon`` given without ``sinkhorn`` switches Sinkhorn on,
        as in the settings record (:attr:`params`, where 0 means off). With ``checkpoint_dir`` a resumable
        checkpoint is saved there every ``checkpoint_every`` epochs."""
        if "sinkhorn" not in settings and "sinkhorn_epsilon" in settings:
            settings["sinkhorn"] = settings["sinkhorn_epsilon"] > 0
        self.config = dataclasses.replace(config or IndexConfig(), **settings)
        if self.config.pooling not in ("attention", "mean"):
            raise ValueError(f"pooling must be 'attention' or 'mean', got {self.config.pooling!r}")
        self.seed = seed
        self.device, self.progress = device, progress
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.checkpoint_every = self.config.checkpoint_every if self.checkpoint_dir else 0

    @property
    def params(self) -> dict:
        """The settings record: :data:`FIT_FIELDS` (``sinkhorn_epsilon`` 0 when Sinkhorn is off) and the seed."""
        c = self.config
        record = {name: getattr(c, name) for name in FIT_FIELDS}
        record.update(hidden_dims=list(c.hidden_dims), sinkhorn_epsilon=c.sinkhorn_epsilon if c.sinkhorn else 0.0)
        return {**record, "seed": self.seed}

    # ------------------------------------------------------------------ fitting
    def fit(self, review_emb: np.ndarray, id_emb: np.ndarray, owners: np.ndarray) -> UserIndexer:
        p = self.config
        self._set_scaler(review_emb, id_emb)
        reviews, ids = self._inputs(review_emb, id_emb, owners)
        num_users = ids.shape[0]
        self.in_dim_ = ids.shape[1]
        generator = torch.Generator().manual_seed(self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.model_ = self._rqvae(self.device)
            self.pooling_ = ReviewAttentionPooling(self.in_dim_).to(self.device)
        params = list(self.model_.parameters())
        if p.pooling == "attention":
            params += list(self.pooling_.parameters())
        else:
            self.pooling_.requires_grad_(False)
        opt = torch.optim.AdamW(params, lr=p.lr, weight_decay=p.weight_decay)
        self.history_: list[dict] = []
        signature = self._signature(review_emb, id_emb, owners)
        start = self._resume(opt, generator, signature)

        if not bool(self.model_.quantizer.initialised):
            with torch.no_grad():
                z = self.model_.encoder(self._pool(reviews, ids, torch.arange(num_users, device=self.device)))
            self.model_.quantizer.kmeans_init(z.cpu(), p.kmeans_iters, generator)
        t0 = time.time()
        bar = tqdm(range(start, p.epochs), desc="index: RQ-VAE", disable=not self.progress, initial=start,
                   total=p.epochs)
        for epoch in bar:
            sums = np.zeros(3)
            for batch in torch.randperm(num_users, generator=generator).split(p.batch_size):
                batch = batch.to(self.device)
                x = self._pool(reviews, ids, batch)
                _, _, recon, rq = self.model_(x, balance=p.sinkhorn)
                loss = recon + rq  # Eq. 6
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sums += np.array([loss.item(), recon.item(), rq.item()]) * len(batch)
            loss, recon, rq = (sums / num_users).tolist()
            self.history_.append({"epoch": epoch + 1, "loss": loss, "recon": recon, "rq": rq})
            bar.set_postfix(loss=f"{loss:.3g}", recon=f"{recon:.3g}", rq=f"{rq:.3g}")
            if self.checkpoint_dir and self.checkpoint_every and (epoch + 1) % self.checkpoint_every == 0 \
                    and epoch + 1 < p.epochs:
                self._save_checkpoint(opt, generator, epoch + 1, signature)
        self.fit_seconds_ = time.time() - t0
        return self

    def fit_transform(self, review_emb: np.ndarray, id_emb: np.ndarray, owners: np.ndarray) -> np.ndarray:
        return self.fit(review_emb, id_emb, owners).transform(review_emb, id_emb, owners)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def quantize(self, review_emb: np.ndarray, id_emb: np.ndarray, owners: np.ndarray) -> dict[str, np.ndarray]:
        """Raw residual quantization (collisions not yet resolved): x (standardized), z, codes, residuals."""
        self._check_fitted()
        reviews, ids = self._inputs(review_emb, id_emb, owners)
        x = self._pool(reviews, ids, torch.arange(ids.shape[0], device=self.device))
        z = self.model_.encoder(x)
        _, codes, _, residuals = self.model_.quantizer(z, balance=self.config.sinkhorn)
        return {"x": x.cpu().numpy(), "z": z.cpu().numpy(), "codes": codes.cpu().numpy(),
                "residuals": residuals.cpu().numpy()}

    @torch.no_grad()
    def transform(self, review_emb: np.ndarray, id_emb: np.ndarray, owners: np.ndarray,
                  unique: bool = True) -> np.ndarray:
        """Codes (U, levels), every row unique when ``unique`` (see :mod:`ulmrec.indexing.unique`)."""
        p = self.config
        q = self.quantize(review_emb, id_emb, owners)
        codes = q["codes"]
        before = collision_stats(codes)
        books = self.model_.quantizer.codebooks.detach().cpu().numpy()
        t0 = time.time()
        final, moved = resolve_collisions(codes, q["residuals"], books) if unique else (codes, {"moved": 0})
        after = collision_stats(final)
        self.report_ = {
            "users": int(len(codes)),
            "collisions_before": before,
            "collisions_after": after,
            "resolution": {**moved, "seconds": round(time.time() - t0, 3)},
            "codebook_before": codebook_usage(codes, p.codebook_size),
            "codebook": codebook_usage(final, p.codebook_size),
            "reconstruction_mse_before": self._recon_mse(q["x"], codes),
            "reconstruction_mse": self._recon_mse(q["x"], final),
            "input_mean_square": float((q["x"] ** 2).mean()),
            "quantization_mse": float(((q["z"] - self._lookup(final)) ** 2).mean()),
        }
        return final

    def pooled(self, review_emb: np.ndarray, id_emb: np.ndarray, owners: np.ndarray) -> np.ndarray:
        """x_u of Eq. 1 for every user (U, d), in the space of the given embeddings."""
        return self.quantize(review_emb, id_emb, owners)["x"] / self.scale_ + self.mean_

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Weights of the RQ-VAE and Eq. 1 in one safetensors file, the settings in its metadata."""
        self._check_fitted()
        tensors = {f"rqvae.{k}": v for k, v in self.model_.state_dict().items()}
        tensors |= {f"pooling.{k}": v for k, v in self.pooling_.state_dict().items()}
        tensors |= {"scaler.mean": torch.as_tensor(self.mean_), "scaler.scale": torch.as_tensor(self.scale_)}
        meta = {"params": json.dumps(self.params), "in_dim": str(self.in_dim_)}
        write_safetensors(path, tensors, metadata=meta)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> UserIndexer:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        params = json.loads(meta["params"])
        self = cls(**params, device=device, progress=False)
        self.in_dim_ = int(meta["in_dim"])
        self.model_ = self._rqvae(device)
        self.pooling_ = ReviewAttentionPooling(self.in_dim_).to(device)
        self.model_.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("rqvae.")})
        self.pooling_.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("pooling.")})
        self.mean_, self.scale_ = tensors["scaler.mean"].numpy(), tensors["scaler.scale"].numpy()
        return self

    # ------------------------------------------------------------------ helpers
    def _rqvae(self, device: str) -> RQVAE:
        p = self.params
        return RQVAE(self.in_dim_, p["hidden_dims"], p["levels"], p["codebook_size"], p["code_dim"], p["beta"],
                     p["sinkhorn_epsilon"], p["sinkhorn_iters"]).to(device)

    def _set_scaler(self, review_emb, id_emb) -> None:
        """Per-dimension mean and std of the texts (the IDs when there are none): sentence embeddings share a
        large common component (mean cosine ~0.55 between random Beauty users) that otherwise lets the RQ-VAE
        collapse onto one code. Standardising texts and IDs alike keeps Eq. 1 a convex combination."""
        ref = np.asarray(review_emb, dtype=np.float32)
        if ref.ndim != 2 or ref.shape[0] < 2:
            ref = np.asarray(id_emb, dtype=np.float32)
        dim = ref.shape[1] if ref.ndim == 2 else 0
        if not self.config.standardize or ref.ndim != 2 or ref.shape[0] < 2:
            self.mean_, self.scale_ = np.zeros(dim, np.float32), np.ones(dim, np.float32)
            return
        self.mean_ = ref.mean(0).astype(np.float32)
        std = ref.std(0)
        self.scale_ = (1.0 / np.maximum(std, 1e-3 * max(float(std.max()), 1e-12))).astype(np.float32)

    def _inputs(self, review_emb, id_emb, owners) -> tuple[RaggedReviews, torch.Tensor]:
        id_emb = np.asarray(id_emb, dtype=np.float32)
        review_emb = np.asarray(review_emb, dtype=np.float32)
        owners = np.asarray(owners, dtype=np.int64)
        if id_emb.ndim != 2 or id_emb.shape[0] == 0:
            raise ValueError(f"no users to index: id_emb must be (users, dim) with users >= 1, got {id_emb.shape}")
        num_users, dim = id_emb.shape
        if review_emb.shape[0] and (review_emb.ndim != 2 or review_emb.shape[1] != dim):
            raise ValueError(f"review_emb must be (reviews, {dim}) like id_emb, got {review_emb.shape}")
        if owners.shape != (review_emb.shape[0],):
            raise ValueError(f"owners must have one entry per review row ({review_emb.shape[0]}), got {owners.shape}")
        if len(owners) and (owners.min() < 0 or owners.max() >= num_users):
            raise ValueError(f"owners must lie in 0..{num_users - 1}")
        if not np.isfinite(id_emb).all() or not np.isfinite(review_emb).all():
            raise ValueError("embeddings contain NaN or infinity")
        if self.mean_.shape != (dim,):
            raise ValueError(f"embeddings have dim {dim}, the indexer was fitted on {self.mean_.shape[0]}")
        review_emb = (review_emb.reshape(-1, dim) - self.mean_) * self.scale_
        id_emb = (id_emb - self.mean_) * self.scale_
        return RaggedReviews(review_emb, owners, num_users, self.device), torch.as_tensor(id_emb, device=self.device)

    def _pool(self, reviews: RaggedReviews, ids: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        rows, local = reviews.batch(users)
        return self.pooling_(rows, local, ids[users])  # pooling='mean': A stays at zero (not trained)

    def _lookup(self, codes: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.model_.quantizer.lookup(torch.as_tensor(codes, device=self.device)).cpu().numpy()

    def _recon_mse(self, x: np.ndarray, codes: np.ndarray) -> float:
        with torch.no_grad():
            z_hat = self.model_.quantizer.lookup(torch.as_tensor(codes, device=self.device))
            x_hat = self.model_.decoder(z_hat).cpu().numpy()
        return float(((x - x_hat) ** 2).mean())

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError("UserIndexer is not fitted; call fit() first")

    def _signature(self, review_emb, id_emb, owners) -> str:
        h = hashlib.sha256(json.dumps(self.params | {"epochs": None}, sort_keys=True).encode())
        for a in (review_emb, id_emb, owners):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------------ checkpoints (resume)
    def _checkpoint_path(self) -> Path | None:
        return self.checkpoint_dir / CHECKPOINT_FILE if self.checkpoint_dir else None

    def _save_checkpoint(self, opt: torch.optim.Optimizer, generator: torch.Generator, epoch: int,
                         signature: str) -> None:
        tensors = {f"rqvae.{k}": v for k, v in self.model_.state_dict().items()}
        tensors |= {f"pooling.{k}": v for k, v in self.pooling_.state_dict().items()}
        state = opt.state_dict()
        for idx, st in state["state"].items():
            for name, value in st.items():
                tensors[f"opt.{idx}.{name}"] = torch.as_tensor(value)
        tensors["generator"] = generator.get_state()
        meta = {"epoch": str(epoch), "signature": signature, "param_groups": json.dumps(state["param_groups"]),
                "history": json.dumps(self.history_)}
        write_safetensors(self._checkpoint_path(), tensors, metadata=meta)
        log.debug("index: checkpoint at epoch %d", epoch)

    def _resume(self, opt: torch.optim.Optimizer, generator: torch.Generator, signature: str) -> int:
        path = self._checkpoint_path()
        if path is None or not path.exists():
            return 0
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if meta.get("signature") != signature or int(meta["epoch"]) > self.config.epochs:
            log.info("index: checkpoint %s is for other settings or data; starting afresh", path)
            return 0
        self.model_.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("rqvae.")})
        self.pooling_.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("pooling.")})
        opt_state: dict = {"state": {}, "param_groups": json.loads(meta["param_groups"])}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, idx, name = k.split(".", 2)
                opt_state["state"].setdefault(int(idx), {})[name] = v
        opt.load_state_dict(opt_state)
        generator.set_state(tensors["generator"])
        self.history_ = json.loads(meta["history"])
        epoch = int(meta["epoch"])
        log.info("index: resumed from checkpoint at epoch %d/%d", epoch, self.config.epochs)
        return epoch

