"""Tiny random-weight checkpoints for tests, demos and laptops: a Llama, a vision-language model, a Whisper
(speech to text) and LoRA adapters.

Model weights cannot be downloaded everywhere this project runs (CI, air-gapped laptops), yet the
serving path must load a checkpoint exactly as it would load a real one. This module writes them:
a config, random weights in safetensors, a BPE tokenizer trained on a small built-in corpus, the chat
template or the image/audio processor, all through ``save_pretrained`` so vLLM and transformers see a normal
HF directory.

torch, transformers and tokenizers are imported inside the functions: the operator package imports
without them (`python -m tests.support.tinymodel` is this module's command line).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

# head_dim = hidden_size / num_attention_heads must be >= 32: vLLM's CPU attention kernels
# reject smaller heads.
HIDDEN_SIZE = 64
NUM_HEADS = 2
NUM_LAYERS = 2
INTERMEDIATE_SIZE = 128
VOCAB_SIZE = 640
MAX_POSITIONS = 512

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"

# Llama-2-style template without a system-prompt special case: short, and every role renders.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

# Enough varied English for BPE to learn a few hundred merges; the model is random anyway.
_CORPUS = """\
The quick brown fox jumps over the lazy dog. A fleet of models serves requests on a cluster.
Hello, how are you today? I am fine, thank you. What is the weather like in the mountains?
Ray Serve runs deployments with replicas that scale up and down with the traffic they receive.
vLLM is a fast inference engine for large language models with paged attention and batching.
Kubernetes operators reconcile the desired state of a resource with the state of the world.
Once upon a time there was a small model that could only say random words, and it was happy.
Numbers: one two three four five six seven eight nine ten eleven twelve thirteen fourteen.
The user asks a question and the assistant answers it politely, briefly and with care.
Tokens, tokenizers, templates and chat messages: system, user, assistant, tool.
"""


def _train_bpe(vocab_size: int, special_tokens: list[str], unk_token: str | None = None) -> Any:
    """A byte-level BPE (GPT-2's kind, as Llama-style and Whisper tokenizers are) trained on the corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=unk_token))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Repeat the corpus so every merge has enough counts to be learnt deterministically.
    tokenizer.train_from_iterator([_CORPUS] * 8, trainer=trainer)
    return tokenizer


def _train_tokenizer(vocab_size: int) -> Any:
    """Train a byte-level BPE tokenizer and wrap it as a transformers fast tokenizer."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = _train_bpe(vocab_size, [UNK, BOS, EOS, PAD], unk_token=UNK)
    # transformers' constructors are untyped; the ignores below are for that alone.
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=MAX_POSITIONS,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(dir: Path, *, seed: int = 0) -> Path:
    """Write a tiny random Llama checkpoint with tokenizer and chat template into ``dir``.

    The same seed gives the same weights and tokenizer. Returns ``dir``.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(VOCAB_SIZE)
    vocab_size = len(tokenizer)

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_HEADS,
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)  # type: ignore[no-untyped-call]
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )
    model.save_pretrained(dir, safe_serialization=True)
    tokenizer.save_pretrained(dir)
    return dir


# The vision-language model: Qwen2-VL's architecture (a ViT with 2x2 patch merging in front of a decoder with
# multimodal rotary positions), one of vLLM's multimodal models that runs on its CPU build. An image becomes
# (H/14 * W/14) / 4 tokens; the processor resizes every image to between 56x56 and 112x112 pixels, so one
# costs 4 to 16 tokens of the tiny context.
VISION_SPECIALS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
IMAGE_PATCH = 14
IMAGE_MIN_PIXELS, IMAGE_MAX_PIXELS = 56 * 56, 112 * 112
# Text parts as they are; each image part becomes Qwen2-VL's image placeholder, which the processor expands.
VISION_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] in ['image', 'image_url'] %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% endif %}{% endfor %}{% endif %}"
    "{{ eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def build_tiny_vision_model(dir: Path, *, seed: int = 0) -> Path:
    """Write a tiny random Qwen2-VL checkpoint (config, weights, tokenizer with the image placeholder
    tokens, image and video processors, chat template) into ``dir``: a vision-language model vLLM loads
    like Qwen/Qwen2-VL-2B-Instruct. The same seed gives the same checkpoint. Returns ``dir``."""
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLProcessor,
    )
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(VOCAB_SIZE)
    tokenizer.add_special_tokens({"additional_special_tokens": VISION_SPECIALS})
    start, end, image, video = tokenizer.convert_tokens_to_ids(VISION_SPECIALS)
    tokenizer.chat_template = VISION_CHAT_TEMPLATE
    # The rotary halves split between time, height and width: they sum to head_dim / 2.
    mrope_section = [4, 6, 6]
    assert sum(mrope_section) == HIDDEN_SIZE // NUM_HEADS // 2
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": HIDDEN_SIZE,
            "intermediate_size": INTERMEDIATE_SIZE,
            "num_hidden_layers": NUM_LAYERS,
            "num_attention_heads": NUM_HEADS,
            "num_key_value_heads": NUM_HEADS,
            "max_position_embeddings": MAX_POSITIONS,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": mrope_section,
            },
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "dtype": "float32",
        },
        vision_config={
            "depth": NUM_LAYERS,
            "embed_dim": HIDDEN_SIZE,
            "hidden_size": HIDDEN_SIZE,
            "num_heads": NUM_HEADS,
            "mlp_ratio": 2,
            "patch_size": IMAGE_PATCH,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=image,
        video_token_id=video,
        vision_start_token_id=start,
        vision_end_token_id=end,
        tie_word_embeddings=True,
        dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(dir, safe_serialization=True)
    processor = Qwen2VLProcessor(  # type: ignore[no-untyped-call]
        image_processor=Qwen2VLImageProcessorPil(min_pixels=IMAGE_MIN_PIXELS, max_pixels=IMAGE_MAX_PIXELS),
        video_processor=Qwen2VLVideoProcessor(
            min_pixels=IMAGE_MIN_PIXELS, max_pixels=IMAGE_MAX_PIXELS, cap_pixels_per_frame=True
        ),
        tokenizer=tokenizer,
        chat_template=VISION_CHAT_TEMPLATE,
    )
    processor.save_pretrained(dir)
    tokenizer.save_pretrained(dir)
    return dir


# The speech model: Whisper's architecture (a log-mel encoder and a text decoder) with the real Whisper
# tokenizer layout, which vLLM serves on /v1/audio/transcriptions. vLLM adds the encoder's learned positions
# to a chunk padded to 30 s, so max_source_positions is fixed by the chunk: 30 s x 16 kHz / 160 hop / 2
# (conv2's stride) = 1500. The decoder's positions bound the transcript: serve with max_model_len <= 128.
SPEECH_MEL_BINS, SPEECH_SAMPLING_RATE, SPEECH_HOP, SPEECH_CHUNK_S = 80, 16_000, 160, 30
SPEECH_MAX_TARGET_POSITIONS = 128
SPEECH_BPE_VOCAB = 512
EOT, SOT = "<|endoftext|>", "<|startoftranscript|>"
# After the language tokens, in Whisper's order (<|nospeech|> was <|nocaptions|> in the first releases).
SPEECH_CONTROL_TOKENS = [
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nospeech|>",
    "<|notimestamps|>",
]


def _speech_tokenizer() -> Any:
    """A WhisperTokenizer with a byte-level BPE trained on the corpus and Whisper's special-token layout:
    <|endoftext|>, the BPE vocabulary, <|startoftranscript|>, every language of transformers' LANGUAGES in
    order (transformers computes a language's id as sot + 1 + index; vLLM's language detection, run for a
    request without `language`, samples among all of them), the task and control tokens, then the timestamps
    <|0.00|> ... <|30.00|> as ordinary tokens, last (both libraries take every id from <|0.00|> on as one)."""
    from tokenizers import AddedToken
    from transformers import WhisperTokenizer
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    trained = json.loads(_train_bpe(SPEECH_BPE_VOCAB, [EOT]).to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    tokenizer = WhisperTokenizer(  # type: ignore[no-untyped-call]
        vocab=dict(trained["vocab"]),
        merges=merges,
        unk_token=EOT,
        bos_token=EOT,
        eos_token=EOT,
        pad_token=EOT,
        model_max_length=SPEECH_MAX_TARGET_POSITIONS,
    )
    specials = [SOT, *(f"<|{code}|>" for code in LANGUAGES), *SPEECH_CONTROL_TOKENS]
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [AddedToken(t, special=True, normalized=False) for t in specials]}
    )
    timestamps = [f"<|{i * 0.02:.2f}|>" for i in range(SPEECH_CHUNK_S * 50 + 1)]
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in timestamps])
    return tokenizer


def build_tiny_speech_model(dir: Path, *, seed: int = 0) -> Path:
    """Write a tiny random Whisper checkpoint (config, weights, generation config, feature extractor and
    tokenizer in a WhisperProcessor) into ``dir``: a speech-to-text model vLLM loads like openai/whisper-tiny.
    The same seed gives the same checkpoint. Returns ``dir``."""
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _speech_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    eot, sot = ids(EOT), ids(SOT)
    space = tokenizer.encode(" ", add_special_tokens=False)
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=SPEECH_MEL_BINS,
        d_model=HIDDEN_SIZE,
        encoder_layers=NUM_LAYERS,
        encoder_attention_heads=NUM_HEADS,
        encoder_ffn_dim=INTERMEDIATE_SIZE,
        decoder_layers=NUM_LAYERS,
        decoder_attention_heads=NUM_HEADS,
        decoder_ffn_dim=INTERMEDIATE_SIZE,
        max_source_positions=SPEECH_CHUNK_S * SPEECH_SAMPLING_RATE // SPEECH_HOP // 2,
        max_target_positions=SPEECH_MAX_TARGET_POSITIONS,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
        suppress_tokens=[],
        begin_suppress_tokens=[*space, eot],
        tie_word_embeddings=True,
        dtype="float32",
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    # With every row random, greedy decoding picks timestamps (most of the vocabulary, printed as
    # "<|12.34|>"), byte fragments or special tokens that vanish from the text. The output projection is tied
    # to the token embedding, so zeroing a row gives its token a logit of exactly 0 while printable text
    # tokens get random-signed ones: the transcript is printable words (noise, the weights are random), it
    # never ends early with <|endoftext|>, and language detection picks <|en|> (equal logits, lowest id).
    keep = [
        i
        for i in range(ids("<|0.00|>"))
        if i not in tokenizer.all_special_ids and _printable(tokenizer.decode([i]))
    ]
    with torch.no_grad():
        embeddings = model.get_input_embeddings().weight
        assert isinstance(embeddings, torch.Tensor)
        kept = embeddings[keep].clone()
        embeddings.zero_()
        embeddings[keep] = kept
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=SPEECH_MAX_TARGET_POSITIONS,
        is_multilingual=True,
        lang_to_id={f"<|{code}|>": ids(f"<|{code}|>") for code in LANGUAGES},
        task_to_id={"translate": ids("<|translate|>"), "transcribe": ids("<|transcribe|>")},
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        max_initial_timestamp_index=50,
        return_timestamps=False,
        suppress_tokens=[],
        begin_suppress_tokens=[*space, eot],
    )
    model.save_pretrained(dir, safe_serialization=True)
    features = WhisperFeatureExtractor(  # type: ignore[no-untyped-call]
        feature_size=SPEECH_MEL_BINS,
        sampling_rate=SPEECH_SAMPLING_RATE,
        hop_length=SPEECH_HOP,
        chunk_length=SPEECH_CHUNK_S,
        n_fft=400,
    )
    WhisperProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(dir)  # type: ignore[no-untyped-call]
    return dir


def _printable(text: str) -> bool:
    return bool(text.strip()) and text.isprintable() and "\ufffd" not in text


# A LoRA of rank 8 on the attention's query and value projections, the most common fine-tune shape.
ADAPTER_RANK = 8
ADAPTER_TARGETS = ["q_proj", "v_proj"]


def build_tiny_adapter(base: Path, dir: Path, *, seed: int) -> Path:
    """Write a random LoRA adapter for the tiny model in ``base`` into ``dir`` with peft, in the layout of
    a real one (adapter_config.json + adapter_model.safetensors). peft starts B at zero (an adapter that
    changes nothing); we draw both matrices at random, large enough that the adapter's replies differ from
    the base model's. The same seed gives the same adapter. Returns ``dir``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(r=ADAPTER_RANK, lora_alpha=2 * ADAPTER_RANK, target_modules=ADAPTER_TARGETS)
    with warnings.catch_warnings():
        # peft calls transformers' `is_gradient_checkpointing`, deprecated since transformers 5.2x: theirs to
        # change, harmless here (tests turn warnings into errors).
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        peft_model = get_peft_model(model, config)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, parameter in peft_model.named_parameters():
                if "lora_" in name:
                    parameter.copy_(torch.randn(parameter.shape, generator=generator))
        peft_model.save_pretrained(str(dir))
    return dir


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.support.tinymodel DIR [--kind text|vision|speech]`, or `--adapter BASE DIR`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.support.tinymodel", description=__doc__)
    parser.add_argument("dir", help="folder to write the checkpoint (or the adapter) to")
    parser.add_argument(
        "--kind",
        choices=["text", "vision", "speech"],
        default="text",
        help="text: a Llama (default); vision: a Qwen2-VL that reads images in chat messages; "
        "speech: a Whisper that transcribes audio",
    )
    parser.add_argument("--adapter", metavar="BASE", help="write a random LoRA adapter for the model in BASE")
    parser.add_argument("--seed", type=int, default=1, help="adapter: the same seed gives the same adapter")
    args = parser.parse_args(argv)
    if args.adapter:
        print(build_tiny_adapter(Path(args.adapter), Path(args.dir), seed=args.seed))
        return 0
    builders = {
        "text": build_tiny_model,
        "vision": build_tiny_vision_model,
        "speech": build_tiny_speech_model,
    }
    print(builders[args.kind](Path(args.dir)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
