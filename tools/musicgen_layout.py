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
