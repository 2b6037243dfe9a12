"""Generate the `commands` speech set: espeak-ng and flite speak the Speech Commands words, augmented.

    python -m training.kinds.audio.commands --out data/commands            # the full set (~20 min on 2 cores)
    python -m training.kinds.audio.commands --out data/commands-small --small   # seconds, for CI

No recorded speech corpus is installable here, so the two Debian engines speak every word: espeak-ng in
8 English accents x its voice variants at random rate and pitch, flite in its 5 English voices at random
duration and f0. Other engines are kept out on purpose (they are the acceptance check's unseen voices).
Whole voices are held out: an espeak-ng variant is in one split only (in every accent), and one flite
voice each is kept for validation and test, so the scores measure voices the model never heard.

Each spoken word is trimmed, then augmented (training/kinds/audio/augment.py: speed, pitch, placement in a clip of
0.45-1.6 s, room reverb, telephone band or random EQ, background noise at 3-35 dB SNR, level) and written
as 16 kHz 16-bit WAV to <out>/<split>/<label>/<voice>-<word>-<n>.wav: the same folder layout
`modelserve train audio --data` reads. Seeded: a task's clip depends on the seed and its index only.
A manifest.json with the parameters makes the step a cache: rerunning with the same ones does nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import subprocess
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from service.kinds.audio.preprocess import decode_wav, resample
from training.kinds.audio import augment

log = logging.getLogger(__name__)

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
WORDS += ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
SILENCE, UNKNOWN = "_silence_", "_unknown_"
LABELS = [*WORDS, SILENCE, UNKNOWN]
# Speech Commands' auxiliary words (v2), then other everyday words: all answered `_unknown_`.
OTHER_WORDS = ["bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow"]
OTHER_WORDS += ["backward", "forward", "follow", "learn", "visual"]
OTHER_WORDS += ["hello", "music", "light", "open", "close", "yellow", "water", "table", "window", "paper"]
OTHER_WORDS += ["morning", "apple", "green", "friday", "chair", "money", "river", "sister", "garden", "lemon"]
ESPEAK_ACCENTS = ["en", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd"]
ESPEAK_ACCENTS += ["en-029", "en-us-nyc"]
FLITE_SPLITS = {"kal16": "train", "slt": "train", "awb": "train", "kal": "validation", "rms": "test"}
SPLITS = ("train", "validation", "test")
FORMAT = 3  # bump when the generation changes: invalidates caches


@dataclass(frozen=True)
class Voice:
    engine: str  # espeak-ng | flite
    name: str  # accent+variant, or flite voice
    split: str

    @property
    def slug(self) -> str:
        return f"{self.engine}_{self.name}".replace("+", "_")


@dataclass(frozen=True)
class Task:
    index: int
    voice: Voice
    word: str  # the spoken word, "" for a silence clip
    label: str
    rate: float  # 1.0 = the engine's default speed
    pitch: float  # 0-1 across the engine's range


def espeak_variants() -> list[str]:
    out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True)
    return sorted(line.split()[-1].split("/")[-1] for line in out.stdout.splitlines()[1:] if line.strip())


def voices(seed: int, small: bool) -> list[Voice]:
    """Every voice with its split: variants are shuffled (seeded) and cut 70/15/15."""
    variants = espeak_variants()
    np.random.default_rng(seed).shuffle(variants)
    n = len(variants)
    cut = {"test": variants[: n * 15 // 100], "validation": variants[n * 15 // 100 : n * 30 // 100]}
    cut["train"] = variants[n * 30 // 100 :]
    accents = ESPEAK_ACCENTS
    if small:
        cut = {split: names[:2] for split, names in cut.items()}
        accents = accents[:3]
    out = [Voice("espeak-ng", f"{a}+{v}", split) for split in SPLITS for v in cut[split] for a in accents]
    return out + [Voice("flite", name, split) for name, split in FLITE_SPLITS.items()]


def plan(seed: int, small: bool, unknown_per_voice: int = 2, flite_takes: int = 16) -> list[Task]:
    """One task per clip: every word by every espeak voice, many takes by each flite voice."""
    rng = np.random.default_rng(seed)
    tasks: list[Task] = []

    def add(voice: Voice, word: str, label: str) -> None:
        tasks.append(Task(len(tasks), voice, word, label, float(rng.uniform(0.7, 1.35)), float(rng.random())))

    for voice in voices(seed, small):
        takes = (2 if small else flite_takes) if voice.engine == "flite" else 1
        for _ in range(takes):
            for word in WORDS:
                add(voice, word, word)
            for word in rng.choice(OTHER_WORDS, size=unknown_per_voice, replace=False):
                add(voice, str(word), UNKNOWN)
    per_word = {s: sum(t.word == "zero" and t.voice.split == s for t in tasks) for s in SPLITS}
    for split in SPLITS:  # as many silence clips as one word has
        for _ in range(per_word[split]):
            add(Voice("noise", "generated", split), "", SILENCE)
    return tasks


def synthesise(task: Task) -> np.ndarray:
    """The engine's clip of the word at 16 kHz float32."""
    v = task.voice
    if v.engine == "espeak-ng":
        cmd = [
            "espeak-ng",
            "-v",
            v.name,
            "-s",
            str(round(175 * task.rate)),
            "-p",
            str(round(10 + 80 * task.pitch)),
        ]
        cmd += ["--stdout", task.word]
    else:
        f0 = 85 + 140 * task.pitch if v.name == "slt" else 70 + 90 * task.pitch
        cmd = ["flite", "-voice", v.name, "--setf", f"duration_stretch={1 / task.rate:.3f}"]
        cmd += ["--setf", f"int_f0_target_mean={f0:.0f}", "-t", task.word, "-o", "/dev/stdout"]
    data = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
    x, rate = decode_wav(data)
    return resample(x, rate, augment.RATE)


def render(task: Task, seed: int, babble: list[np.ndarray], copies: int) -> list[np.ndarray]:
    """``copies`` augmentations of one synthesis (or silence clips)."""
    rngs = [np.random.default_rng([seed, task.index, c]) for c in range(copies)]
    if task.label == SILENCE:
        return [augment.silence(rng) for rng in rngs]
    word = augment.trim(synthesise(task))
    return [augment.augment(word, rng, babble) for rng in rngs]


def write_wav(path: Path, x: np.ndarray) -> None:
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(augment.RATE)
        w.writeframes(pcm.tobytes())


def generate(out: Path, seed: int = 0, small: bool = False, jobs: int = 4, train_copies: int = 2) -> Path:
    """Write the set under ``out`` unless a manifest with the same parameters is there.

    Each training synthesis is augmented ``train_copies`` times; held-out ones once."""
    params = {"format": FORMAT, "seed": seed, "small": small, "train_copies": train_copies}
    manifest = out / "manifest.json"
    if manifest.exists() and json.loads(manifest.read_text()).get("params") == params:
        log.info("%s is up to date", out)
        return out
    for tool in ("espeak-ng", "flite"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install espeak-ng flite (make data does)")
    tasks = plan(seed, small)
    shutil.rmtree(out, ignore_errors=True)
    for split in SPLITS:
        for label in LABELS:
            (out / split / label).mkdir(parents=True, exist_ok=True)
    # Babble: other words from training voices only, so no held-out voice leaks into training clips.
    babble_src = [t for t in tasks if t.label == UNKNOWN and t.voice.split == "train"][
        :: 7 if not small else 1
    ][:60]
    with ThreadPoolExecutor(jobs) as pool:
        babble = [augment.trim(x) for x in pool.map(synthesise, babble_src)]

        def one(task: Task) -> tuple[str, int]:
            train = task.voice.split == "train"
            clips = render(task, seed, babble if train else [], train_copies if train else 1)
            for c, x in enumerate(clips):
                name = f"{task.voice.slug}-{task.word or 'noise'}-{task.index}-{c}.wav"
                write_wav(out / task.voice.split / task.label / name, x)
            return task.voice.split, len(clips)

        counts = {s: 0 for s in SPLITS}
        for i, (split, n) in enumerate(pool.map(one, tasks), 1):
            counts[split] += n
            if i % 2000 == 0:
                log.info("%d/%d clips", i, len(tasks))
    digest = hashlib.sha256(json.dumps([asdict(t) for t in tasks]).encode()).hexdigest()[:16]
    voices_by_split = {s: sorted({t.voice.slug for t in tasks if t.voice.split == s}) for s in SPLITS}
    manifest.write_text(
        json.dumps(
            {"params": params, "plan": digest, "counts": counts, "labels": LABELS, "voices": voices_by_split},
            indent=1,
        )
        + "\n"
    )
    log.info("wrote %s: %s", out, counts)
    return out


def write_heldout(source: Path, out: Path, per_label: int = 3, seed: int = 0) -> None:
    """A seeded pick of ``per_label`` test-split clips per label (held-out voices), copied to ``out``:
    the small set committed for tests (tests/data/commands)."""
    rng = np.random.default_rng(seed)
    for label in LABELS:
        files = sorted((source / "test" / label).glob("*.wav"))
        flite = [f for f in files if f.name.startswith("flite")]
        others = [f for f in files if not f.name.startswith("flite")]
        picks = ([flite[int(rng.integers(len(flite)))]] if flite else []) + list(
            rng.choice(np.asarray(others, dtype=object), size=per_label - (1 if flite else 0), replace=False)
        )
        (out / label).mkdir(parents=True, exist_ok=True)
        for f in picks:
            shutil.copyfile(f, out / label / f.name)


def write_examples(out: Path, seed: int = 0) -> None:
    """Clean clips of a few words by held-out voices (no augmentation): examples/commands/<word>-<voice>.wav."""
    held_out = [v for v in voices(seed, small=False) if v.split == "test"]
    espeak = [v for v in held_out if v.name.startswith("en-us+")]
    plain = [v for v in espeak if v.name.split("+")[1] in ("m2", "david", "Annie")]  # not the robotic ones
    speakers = [next(v for v in held_out if v.engine == "flite"), (plain or espeak)[0]]
    out.mkdir(parents=True, exist_ok=True)
    for i, word in enumerate(["yes", "no", "seven", "stop", "left", "up"]):
        voice = speakers[i % 2]
        x = augment.trim(synthesise(Task(i, voice, word, word, 1.0, 0.5)))
        x = np.pad(x, (3200, 3200)) / (np.abs(x).max() + 1e-9) * 0.7
        write_wav(out / f"{word}-{voice.slug.replace('_', '-')}.wav", x)


def write_clean_test(out: Path, seed: int = 0, per_label: int | None = None, jobs: int = 4) -> int:
    """The test split's voices speaking its words WITHOUT augmentation: <out>/<label>/<name>.wav.

    Same tasks (voice, word, rate, pitch) as the test split, each clip the trimmed word with 0.2 s of
    digital silence either side at 0.7 peak, as a quiet recording would be; `_silence_` clips are the
    test split's generated noise (there is no clean silence). ``per_label`` keeps that many per label
    (the flite voice's first, then espeak-ng ones): the small set committed for tests. Returns the count."""
    tasks = [t for t in plan(seed, small=False) if t.voice.split == "test"]
    if per_label is not None:
        picked: list[Task] = []
        for label in LABELS:
            mine = [t for t in tasks if t.label == label]
            flite = [t for t in mine if t.voice.engine == "flite"][:1]
            rest = [t for t in mine if t.voice.engine != "flite"]
            rest = [rest[int(i)] for i in np.random.default_rng(seed).permutation(len(rest))]
            picked += (flite + rest)[:per_label]
        tasks = picked

    def one(task: Task) -> None:
        if task.label == SILENCE:
            x = augment.silence(np.random.default_rng([seed, task.index, 0]))
        else:
            word = augment.trim(synthesise(task))
            x = np.pad(word, (3200, 3200)) / (np.abs(word).max() + 1e-9) * 0.7
        (out / task.label).mkdir(parents=True, exist_ok=True)
        write_wav(out / task.label / f"{task.voice.slug}-{task.word or 'noise'}-{task.index}.wav", x)

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, tasks))
    return len(tasks)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("data/commands"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--small", action="store_true", help="a few voices only: a CI-sized set")
    parser.add_argument("--jobs", type=int, default=4, help="engine processes at once")
    parser.add_argument("--train-copies", type=int, default=2, help="augmentations of each training clip")
    parser.add_argument("--heldout", type=Path, help="also copy a few test clips per label here (tests)")
    parser.add_argument("--examples", type=Path, help="also write clean example clips here")
    parser.add_argument("--clean-test", type=Path, help="also write the test voices' clips unaugmented here")
    parser.add_argument("--per-label", type=int, help="with --clean-test: only this many clips per label")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    generate(args.out, args.seed, args.small, args.jobs, args.train_copies)
    if args.heldout:
        write_heldout(args.out, args.heldout, seed=args.seed)
    if args.examples:
        write_examples(args.examples, seed=args.seed)
    if args.clean_test:
        write_clean_test(args.clean_test, seed=args.seed, per_label=args.per_label, jobs=args.jobs)


if __name__ == "__main__":
    main()
