"""Configuration pieces shared by the reference scripts in tools/."""

from __future__ import annotations


def encodec_32khz_config(num_filters: int = 64, hidden_size: int = 128):
    """facebook/encodec_32khz (MusicGen's codec); smaller widths give the tiny fixture codec."""
    from transformers import EncodecConfig

    return EncodecConfig(
        sampling_rate=32000,
        audio_channels=1,
        normalize=False,
        target_bandwidths=[2.2],
        upsampling_ratios=[8, 5, 4, 4],
        num_filters=num_filters,
        hidden_size=hidden_size,
        codebook_size=2048,
        codebook_dim=hidden_size,
        num_residual_layers=1,
        kernel_size=7,
        last_kernel_size=7,
        residual_kernel_size=3,
        dilation_growth_rate=2,
        compress=2,
        num_lstm_layers=2,
        use_causal_conv=False,
        pad_mode="reflect",
        norm_type="weight_norm",
        use_conv_shortcut=False,
        trim_right_ratio=1.0,
        chunk_length_s=None,
        overlap=None,
    )


def musicgen_small_decoder_config(dropout: float = 0.1):
    """facebook/musicgen-small's decoder LM (24 layers, 1024-d, 16 heads, 4 codebooks). The
    published config has dropout 0.1; tunelab trains with 0 by default (audiocraft's setting)."""
    from transformers import MusicgenDecoderConfig

    return MusicgenDecoderConfig(
        vocab_size=2048,
        max_position_embeddings=2048,
        num_hidden_layers=24,
        ffn_dim=4096,
        num_attention_heads=16,
        hidden_size=1024,
        num_codebooks=4,
        activation_function="gelu",
        dropout=dropout,
        attention_dropout=0.0,
        activation_dropout=0.0,
        layerdrop=0.0,
        pad_token_id=2048,
        bos_token_id=2048,
        audio_channels=1,
        scale_embedding=False,
        tie_word_embeddings=False,
    )
