"""SpeechCommands as log-mel spectrograms, computed with torch alone (no torchaudio).

Features: each clip is padded with zeros (or cut) to 1 s, framed with a Hann window (25 ms,
10 ms hop, centred frames: 101 frames per second), turned into a power spectrum, pooled by
triangular filters equally spaced on the HTK mel scale (0 Hz to Nyquist, unnormalised, as
torchaudio's default), and log-compressed. The whole array is then standardised with one mean
and one std from the train split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdtransfer.data.core import ArrayDataset, DatasetError, loader, missing_data_error, stratified_head
from kdtransfer.options import COUNT, POSITIVE
from kdtransfer.paths import DATA_DIR

SPEECH_COMMANDS_ROOT = f"{DATA_DIR}/SpeechCommands/speech_commands_v0.02"
# The 35 words of SpeechCommands v0.02 (`classes: all`).
SPEECH_COMMANDS_WORDS = (
    "backward",
    "bed",
    "bird",
    "cat",
    "dog",
    "down",
    "eight",
    "five",
    "follow",
    "forward",
    "four",
    "go",
    "happy",
    "house",
    "learn",
    "left",
    "marvin",
    "nine",
    "no",
    "off",
    "on",
    "one",
    "right",
    "seven",
    "sheila",
    "six",
    "stop",
    "three",
    "tree",
    "two",
    "up",
    "visual",
    "wow",
    "yes",
    "zero",
)
CLIP_SECONDS = 1.0
LOG_FLOOR = 1e-6  # added before the log: silence (zero padding) maps to log(1e-6), not -inf
_CHUNK = 512  # clips per STFT batch: ~100 MB of complex spectra at the defaults


def hz_to_mel(hz):
    """HTK mel scale: 1000 Hz is (almost exactly) 1000 mel."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


def mel_filterbank(
    n_freqs: int, sample_rate: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None
) -> np.ndarray:
    """[n_mels, n_freqs] triangular filters over the rfft bins 0..sample_rate/2.

    Filter m rises from edge m to 1 at edge m+1 and falls to 0 at edge m+2, the n_mels + 2 edges
    equally spaced in mel between f_min and f_max; neighbouring filters sum to 1 between their peaks."""
    f_max = sample_rate / 2 if f_max is None else f_max
    bin_hz = np.linspace(0.0, sample_rate / 2, n_freqs)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    left, peak, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bin_hz[None, :] - left) / (peak - left)
    falling = (right - bin_hz[None, :]) / (right - peak)
    bank = np.maximum(0.0, np.minimum(rising, falling))
    empty = np.flatnonzero(bank.sum(axis=1) == 0)
    if len(empty):
        # Too many mel bands for the frequency resolution: some filters fall between two bins.
        raise DatasetError(
            f"mel filters {empty.tolist()} cover no frequency bin: {n_mels} mel bands need a longer "
            f"window than {2 * (n_freqs - 1)} FFT points at {sample_rate} Hz"
        )
    return bank.astype(np.float32)


def stft_sizes(sample_rate: int, win_ms: float, hop_ms: float) -> tuple[int, int, int]:
    """(win_length, hop_length, n_fft) in samples; n_fft is the next power of two >= window."""
    win_length = int(round(sample_rate * win_ms / 1000))
    hop_length = int(round(sample_rate * hop_ms / 1000))
    return win_length, hop_length, 1 << (win_length - 1).bit_length()


def frame_count(n_samples: int, hop_length: int) -> int:
    # Centred frames: the signal is padded by n_fft // 2 on both sides, one frame per hop.
    return 1 + n_samples // hop_length


def log_mel_spectrogram(waveforms, sample_rate: int, n_mels: int = 40, win_ms: float = 25.0, hop_ms: float = 10.0):
    """torch float [n, samples] in [-1, 1] -> float32 [n, n_mels, frames] natural-log mel power."""
    import torch

    win_length, hop_length, n_fft = stft_sizes(sample_rate, win_ms, hop_ms)
    waveforms = waveforms.to(torch.float32)
    spectrum = torch.stft(
        waveforms,
        n_fft,
        hop_length=hop_length,
        win_length=win_length,
        window=torch.hann_window(win_length),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    power = spectrum.real**2 + spectrum.imag**2  # [n, n_freqs, frames]
    bank = torch.from_numpy(mel_filterbank(n_fft // 2 + 1, sample_rate, n_mels))
    return torch.log(torch.matmul(bank, power) + LOG_FLOOR)


def read_pcm16(path: Path, sample_rate: int) -> np.ndarray:
    """A mono 16-bit PCM WAV as int16 samples; another format or rate is an error (no resampling)."""
    from scipy.io import wavfile

    rate, samples = wavfile.read(path)
    if rate != sample_rate or samples.dtype != np.int16 or samples.ndim != 1:
        raise DatasetError(
            f"{path}: {rate} Hz {samples.dtype} with shape {samples.shape}; expected mono 16-bit PCM "
            f"at {sample_rate} Hz"
        )
    return samples


def _fixed_length(samples: np.ndarray, length: int) -> np.ndarray:
    # Pad at the end with silence, or keep the first `length` samples.
    out = np.zeros(length, np.int16)
    out[: min(length, len(samples))] = samples[:length]
    return out


def speech_commands_files(root: Path, classes: list[str]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(train, test) lists of (path relative to root, class index), sorted by path.
    Test = testing_list.txt; train = every clip of the classes in neither list."""
    for relative in ("testing_list.txt", "validation_list.txt", *classes):
        if not (root / relative).exists():
            raise missing_data_error(
                "SpeechCommands v0.02",
                root,
                root / relative,
                f"<word>/<speaker>_nohash_<n>.wav folders, validation_list.txt and testing_list.txt under {root}",
                "speech_commands",
                SPEECH_COMMANDS_ROOT,
            )
    listed = {name: set((root / f"{name}_list.txt").read_text().split()) for name in ("testing", "validation")}
    index = {word: i for i, word in enumerate(classes)}
    test = sorted((path, index[path.split("/")[0]]) for path in listed["testing"] if path.split("/")[0] in index)
    train = []
    for word in classes:
        for path in sorted((root / word).glob("*.wav")):
            relative = f"{word}/{path.name}"
            if relative not in listed["testing"] and relative not in listed["validation"]:
                train.append((relative, index[word]))
    if not train:
        raise DatasetError(f"no training clips of {classes} under {root}")
    return train, test


def _resolve_classes(classes) -> list[str]:
    if classes == "all":
        return list(SPEECH_COMMANDS_WORDS)
    if isinstance(classes, str) or not classes:
        raise DatasetError(f"classes must be 'all' or a list of words, not {classes!r}")
    unknown = sorted(set(classes) - set(SPEECH_COMMANDS_WORDS))
    if unknown or len(set(classes)) != len(classes):
        raise DatasetError(
            f"classes {classes!r}: unknown or repeated words {unknown}; valid words: {', '.join(SPEECH_COMMANDS_WORDS)}"
        )
    # Sorted, so a class's index does not depend on how the config lists the words.
    return sorted(classes)


def _spectrograms(
    root: Path, files: list[str], sample_rate: int, n_mels: int, win_ms: float, hop_ms: float
) -> np.ndarray:
    import torch

    length = int(round(CLIP_SECONDS * sample_rate))
    _, hop_length, _ = stft_sizes(sample_rate, win_ms, hop_ms)
    out = np.empty((len(files), 1, n_mels, frame_count(length, hop_length)), np.float32)
    for start in range(0, len(files), _CHUNK):
        batch = np.stack(
            [_fixed_length(read_pcm16(root / f, sample_rate), length) for f in files[start : start + _CHUNK]]
        )
        waveforms = torch.from_numpy(batch.astype(np.float32) / 32768.0)
        out[start : start + len(batch), 0] = log_mel_spectrogram(waveforms, sample_rate, n_mels, win_ms, hop_ms).numpy()
    return out


def _mean_std(x: np.ndarray, chunk: int = 4096) -> tuple[float, float]:
    """Mean and std of all values, two passes in float64 over chunks of samples (np.std would
    allocate a float64 copy of the whole array)."""
    total = sum(block.sum(dtype=np.float64) for block in np.array_split(x, max(1, len(x) // chunk)))
    mean = total / x.size
    squares = sum(
        ((block.astype(np.float64) - mean) ** 2).sum() for block in np.array_split(x, max(1, len(x) // chunk))
    )
    return mean, float(np.sqrt(squares / x.size)) + 1e-8


def spectrogram_shape(n_mels: int, sample_rate: int, win_ms: float, hop_ms: float, **_) -> tuple[int, int, int]:
    """[1, n_mels, frames] of one clip."""
    return 1, n_mels, frame_count(int(round(CLIP_SECONDS * sample_rate)), stft_sizes(sample_rate, win_ms, hop_ms)[1])


@loader(
    sample_shape=spectrogram_shape,
    n_mels=COUNT,
    sample_rate=COUNT,
    win_ms=POSITIVE,
    hop_ms=POSITIVE,
    max_train=COUNT,
    max_test=COUNT,
)
def load_speech_commands(
    root: str = SPEECH_COMMANDS_ROOT,
    classes: str | list[str] = "all",
    n_mels: int = 40,
    sample_rate: int = 16000,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
    max_train: int | None = None,
    max_test: int | None = None,
) -> ArrayDataset:
    """SpeechCommands v0.02 as standardised log-mel spectrograms, float32 [n, 1, n_mels, frames]
    (1 s: 101 frames at the default 10 ms hop). Train 84,843 and test 11,005 clips with all 35
    words: 1.37 GB + 0.18 GB at 40 mels. The validation list is not used. max_train/max_test:
    stratified first-N subsample, taken before reading."""
    words = _resolve_classes(classes)
    root_path = Path(root)
    train, test = speech_commands_files(root_path, words)
    splits = []
    for files, max_n in ((train, max_train), (test, max_test)):
        labels = np.array([label for _, label in files], np.int64)
        keep = stratified_head(labels, max_n)
        splits.append(
            (_spectrograms(root_path, [files[i][0] for i in keep], sample_rate, n_mels, win_ms, hop_ms), labels[keep])
        )
    (x_train, y_train), (x_test, y_test) = splits
    mean, std = _mean_std(x_train)
    # In place: a standardised copy of 1.4 GB would double the peak memory.
    for x in (x_train, x_test):
        x -= np.float32(mean)
        x /= np.float32(std)
    return ArrayDataset(x_train, y_train, x_test, y_test, len(words), "audio", class_names=words)
