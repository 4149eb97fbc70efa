"""Corpus loaders on tiny fixture files named as each corpus names them, splits, and the clip dataset.

No test reads the shared corpora: every fixture is a few hundred samples written here with soundfile.
"""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from trainer.audio.corpora import (
    AudioLoadReport,
    AudioRecord,
    ClipDataset,
    detect_corpus,
    load_audio_emotions,
    load_corpora,
    load_corpus,
    load_cremad,
    load_csv,
    load_deam,
    load_emodb,
    load_folder,
    load_pmemo,
    load_ravdess,
    load_savee,
    load_tess,
)
from trainer.audio.splits import leave_corpus_out, make_split, random_split, speaker_independent_split
from trainer.audio.taxonomy import circumplex_va, get_taxonomy

SR = 8000


def _wav(path: Path, seconds: float = 0.05, sr: int = SR, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * sr)).astype(np.float32)
    sf.write(path, audio, sr, format="FLAC" if path.suffix == ".flac" else "WAV")
    return path


def _files(root: Path, names: list[str]) -> None:
    for name in names:
        _wav(root / name)


def _issue(report: AudioLoadReport, kind: str) -> int:
    return report.issues[kind].count if kind in report.issues else 0


# -- RAVDESS -------------------------------------------------------------------------------------------


def test_ravdess_parses_speech_and_song_and_reports_bad_files(tmp_path: Path) -> None:
    _files(
        tmp_path,
        [
            "Actor_01/03-01-05-02-01-01-01.wav",  # speech, angry, strong
            "Actor_01/03-02-03-01-02-02-01.wav",  # song, happy, normal
            "Actor_02/03-01-01-01-01-01-02.flac",  # speech, neutral
            "Actor_02/03-01-02-02-02-01-02.wav",  # speech, calm, strong
            "Actor_02/03-01-01-02-01-01-02.wav",  # neutral has no strong intensity
            "Actor_01/03-01-04-01-01-01-02.wav",  # actor 02 inside Actor_01
            "Actor_02/03-02-07-01-01-01-02.wav",  # song has no disgust
            "Actor_02/03-01-09-01-01-01-02.wav",  # emotion 09 does not exist
            "Actor_02/recording.wav",
        ],
    )
    (tmp_path / "Actor_02" / "03-01-03-01-01-01-02.wav").write_bytes(b"RIFF not really a wav")
    (tmp_path / "Actor_02" / "notes.txt").write_text("hello")
    (tmp_path / "Actor_02" / "._03-01-03-01-01-02-02.wav").write_bytes(b"\0")  # macOS resource fork

    records, report = load_ravdess(tmp_path)
    by_name = {r.path.name: r for r in records}
    assert sorted(by_name) == [
        "03-01-01-01-01-01-02.flac",
        "03-01-02-02-02-01-02.wav",
        "03-01-05-02-01-01-01.wav",
        "03-02-03-01-02-02-01.wav",
    ]
    angry = by_name["03-01-05-02-01-01-01.wav"]
    assert (angry.emotion, angry.speaker, angry.corpus, angry.intensity) == ("angry", "ravdess:01", "ravdess", "strong")
    assert angry.valence is None and angry.arousal is None and angry.speaker_known
    assert by_name["03-02-03-01-02-02-01.wav"].emotion == "happy"
    assert by_name["03-01-02-02-02-01-02.wav"].emotion == "calm"
    assert report.records == 4 and report.speakers == 2
    assert report.per_emotion == Counter({"angry": 1, "happy": 1, "neutral": 1, "calm": 1})
    assert _issue(report, "mislabelled") == 3
    assert _issue(report, "unknown_label") == 1
    assert _issue(report, "unparseable") == 1
    assert _issue(report, "unreadable") == 1
    assert report.ignored == 2
    assert "Actor_01" in " ".join(report.issues["mislabelled"].examples)
    assert "skipped 1 unreadable" in report.summary()

    speech, speech_report = load_ravdess(tmp_path, vocal="speech")
    assert len(speech) == 3 and speech_report.filtered == 1
    assert len(load_ravdess(tmp_path, vocal="song").records) == 1


def test_report_keeps_five_examples_but_counts_all(tmp_path: Path) -> None:
    _files(tmp_path, [f"Actor_01/bad_{i}.wav" for i in range(8)] + ["Actor_01/03-01-03-01-01-01-01.wav"])
    records, report = load_ravdess(tmp_path)
    assert len(records) == 1
    assert report.issues["unparseable"].count == 8
    assert len(report.issues["unparseable"].examples) == 5
    assert report.to_dict()["issues"]["unparseable"]["count"] == 8


def test_missing_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such corpus"):
        load_emodb(tmp_path / "nowhere")


# -- CREMA-D, TESS, SAVEE, EmoDB -----------------------------------------------------------------------


def test_cremad_speaker_sentence_emotion_level(tmp_path: Path) -> None:
    _files(
        tmp_path,
        [
            "1001_DFA_ANG_XX.wav",
            "1002_IEO_HAP_HI.wav",
            "1002_TIE_FEA_LO.wav",
            "1091_WSI_NEU_XX.wav",
            "1003_TIE_XYZ_LO.wav",  # unknown emotion
            "1004_DFA_SAD_QQ.wav",  # unknown level
        ],
    )
    (tmp_path / "1076_MTI_SAD_XX.wav").write_bytes(b"")  # CREMA-D ships one empty file like this
    records, report = load_cremad(tmp_path)
    got = {(r.speaker, r.emotion, r.intensity) for r in records}
    assert got == {
        ("cremad:1001", "angry", None),
        ("cremad:1002", "happy", "high"),
        ("cremad:1002", "fearful", "low"),
        ("cremad:1091", "neutral", None),
    }
    assert _issue(report, "unknown_label") == 1
    assert _issue(report, "unparseable") == 1
    assert _issue(report, "unreadable") == 1


def test_tess_speaker_folders_pleasant_surprise_and_duplicates(tmp_path: Path) -> None:
    _files(
        tmp_path,
        [
            "OAF_angry/OAF_back_angry.wav",
            "OAF_Fear/OAF_bar_fear.wav",
            "YAF_pleasant_surprised/YAF_dog_ps.wav",
            "OAF_Pleasant_surprise/OAF_base_pleasant_surprise.wav",
            "YAF_disgust/YAF_germ_disgust.wav",
            "OAF_angry/OAF_bite_sad.wav",  # emotion contradicts the folder
            "YAF_sad/OAF_bath_sad.wav",  # speaker contradicts the folder
            "copy/OAF_angry/OAF_back_angry.wav",  # the nested second copy some downloads carry
            "YAF_happy/YAF_back_joyful.wav",
        ],
    )
    records, report = load_tess(tmp_path)
    got = sorted((r.speaker, r.emotion) for r in records)
    assert got == [
        ("tess:OAF", "angry"),
        ("tess:OAF", "fearful"),
        ("tess:OAF", "surprised"),
        ("tess:YAF", "disgust"),
        ("tess:YAF", "surprised"),
    ]
    assert _issue(report, "mislabelled") == 2
    assert _issue(report, "duplicate") == 1
    assert _issue(report, "unknown_label") == 1


def test_savee_flat_and_speaker_folders(tmp_path: Path) -> None:
    _files(
        tmp_path,
        [
            "DC_a01.wav",
            "JE_sa02.wav",
            "JK_su15.wav",
            "KL/h03.wav",
            "JK/d01.wav",
            "KL/KL_n04.wav",
            "DC/JE_f01.wav",  # prefix contradicts folder
            "a05.wav",  # no speaker anywhere
            "ZZ_a01.wav",  # not a SAVEE speaker
        ],
    )
    records, report = load_savee(tmp_path)
    got = sorted((r.speaker, r.emotion) for r in records)
    assert got == [
        ("savee:DC", "angry"),
        ("savee:JE", "sad"),
        ("savee:JK", "disgust"),
        ("savee:JK", "surprised"),
        ("savee:KL", "happy"),
        ("savee:KL", "neutral"),
    ]
    assert _issue(report, "mislabelled") == 1
    assert _issue(report, "unparseable") == 2


def test_emodb_sixth_character_is_the_emotion(tmp_path: Path) -> None:
    _files(tmp_path, ["03a01Fa.wav", "16b10Td.flac", "08a02Lc.wav", "11b03Wb.wav", "09a05Ea.wav", "10a07Ab.wav"])
    _files(tmp_path, ["13a01Nc.wav", "03a01Xa.wav", "3a01Fa.wav"])
    records, report = load_emodb(tmp_path)
    got = {r.path.stem: (r.speaker, r.emotion) for r in records}
    assert got == {
        "03a01Fa": ("emodb:03", "happy"),
        "16b10Td": ("emodb:16", "sad"),
        "08a02Lc": ("emodb:08", "bored"),
        "11b03Wb": ("emodb:11", "angry"),
        "09a05Ea": ("emodb:09", "disgust"),
        "10a07Ab": ("emodb:10", "fearful"),
        "13a01Nc": ("emodb:13", "neutral"),
    }
    assert _issue(report, "unknown_label") == 1 and _issue(report, "unparseable") == 1


# -- folder per label ----------------------------------------------------------------------------------


def test_audio_emotions_compilation_recovers_original_speakers(tmp_path: Path) -> None:
    _files(
        tmp_path,
        [
            "Angry/03-01-05-01-01-01-01.wav",
            "Suprised/OAF_back_ps.wav",
            "Sad/1001_DFA_SAD_XX.wav",
            "Fearful/DC_f02.wav",
            "Disgusted/clip_0001.wav",
            "Neutral/03a01Nc.wav",
            "Happy/03-01-04-01-01-01-01.wav",  # a sad RAVDESS clip filed under Happy
            "Other/x.wav",
            "loose.wav",
        ],
    )
    records, report = load_audio_emotions(tmp_path)
    got = {r.path.name: (r.emotion, r.speaker, r.corpus, r.speaker_known) for r in records}
    assert got == {
        "03-01-05-01-01-01-01.wav": ("angry", "ravdess:01", "audio_emotions", True),
        "OAF_back_ps.wav": ("surprised", "tess:OAF", "audio_emotions", True),
        "1001_DFA_SAD_XX.wav": ("sad", "cremad:1001", "audio_emotions", True),
        "DC_f02.wav": ("fearful", "savee:DC", "audio_emotions", True),
        "clip_0001.wav": ("disgust", "audio_emotions:?Disgusted/clip_0001.wav", "audio_emotions", False),
        "03a01Nc.wav": ("neutral", "emodb:03", "audio_emotions", True),
    }
    assert _issue(report, "mislabelled") == 1
    assert _issue(report, "unknown_label") == 1
    assert _issue(report, "unparseable") == 1


def test_folder_per_label_with_speaker_subfolders(tmp_path: Path) -> None:
    _files(tmp_path, ["unzipped/happy/anna/1.wav", "unzipped/happy/ben/1.wav", "unzipped/Sadness/anna/2.ogg"])
    _files(tmp_path, ["unzipped/angry/3.wav"])
    records, _ = load_folder(tmp_path)  # descends through the lone wrapper folder
    assert detect_corpus(tmp_path) == "folder"
    got = sorted((r.emotion, r.speaker) for r in records)
    assert got == [
        ("angry", "folder:?angry/3.wav"),
        ("happy", "folder:anna"),
        ("happy", "folder:ben"),
        ("sad", "folder:anna"),
    ]


# -- CSV and continuous corpora ------------------------------------------------------------------------


def test_csv_with_labels_va_and_speakers(tmp_path: Path) -> None:
    _files(tmp_path, ["clips/a.wav", "clips/b.wav", "clips/c.wav", "clips/d.wav", "clips/e.wav"])
    (tmp_path / "labels.csv").write_text(
        "Path,Label,Valence,Arousal,Speaker\n"
        "clips/a.wav,Anger,,,s1\n"
        "clips/b.wav,happy,0.5,0.25,s2\n"
        "clips/c.wav,,-0.5,-0.75,\n"
        "clips/d.wav,elated,,,s1\n"
        "clips/e.wav,sad,3,0.1,s1\n"
        "clips/missing.wav,sad,,,s1\n"
        "clips/e.wav,,,,s1\n"
        ",sad,,,s1\n"
    )
    records, report = load_csv(tmp_path / "labels.csv")
    got = [(r.path.name, r.emotion, r.valence, r.arousal, r.speaker, r.speaker_known) for r in records]
    assert got == [
        ("a.wav", "angry", None, None, "labels:s1", True),
        ("b.wav", "happy", 0.5, 0.25, "labels:s2", True),
        ("c.wav", None, -0.5, -0.75, "labels:?clips/c.wav", False),
    ]
    assert _issue(report, "unknown_label") == 1
    assert _issue(report, "mislabelled") == 1  # valence 3 outside [-1, 1]
    assert _issue(report, "missing_audio") == 1
    assert _issue(report, "unparseable") == 2

    (tmp_path / "rated.csv").write_text("file,valence,arousal\nclips/a.wav,9,1\nclips/b.wav,5,3\n")
    rated, _ = load_csv(tmp_path / "rated.csv", va_range=(1.0, 9.0), corpus="rated")
    assert [(r.valence, r.arousal) for r in rated] == [(1.0, -1.0), (0.0, -0.5)]
    (tmp_path / "bad.csv").write_text("name,mood\na.wav,happy\n")
    with pytest.raises(ValueError, match="path"):
        load_csv(tmp_path / "bad.csv")


def test_deam_rescales_one_to_nine_and_matches_song_ids(tmp_path: Path) -> None:
    _files(tmp_path, ["MEMD_audio/2.wav", "MEMD_audio/3.wav", "MEMD_audio/7.wav"])
    notes = tmp_path / "annotations" / "static_annotations_averaged_songs_1_2000.csv"
    notes.parent.mkdir()
    # DEAM's own header has a space after each comma
    notes.write_text(
        "song_id, valence_mean, valence_std, arousal_mean, arousal_std\n2, 5, 1, 9, 1\n3, 1, 1, 7, 1\n4, 5, 1, 5, 1\n"
    )
    (tmp_path / "annotations" / "arousal.csv").write_text("song_id,sample_15000ms\n2,0.1\n")  # dynamic: not read
    records, report = load_deam(tmp_path)
    got = {r.path.stem: (r.emotion, r.valence, r.arousal, r.speaker, r.corpus) for r in records}
    assert got == {"2": (None, 0.0, 1.0, "deam:2", "deam"), "3": (None, -1.0, 0.5, "deam:3", "deam")}
    assert _issue(report, "unannotated") == 1  # 7.wav
    assert _issue(report, "missing_audio") == 1  # song 4
    assert report.per_emotion == Counter({"(continuous)": 2})
    assert detect_corpus(tmp_path) == "deam"


def test_pmemo_columns_on_zero_one(tmp_path: Path) -> None:
    _files(tmp_path, ["chorus/1.wav", "chorus/4.wav"])
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "static_annotations.csv").write_text(
        "musicId,Arousal(mean),Valence(mean)\n1,0.75,0.25\n4,0.5,1.0\n"
    )
    records, _ = load_pmemo(tmp_path)
    assert [(r.speaker, r.valence, r.arousal) for r in records] == [("pmemo:1", -0.5, 0.5), ("pmemo:4", 1.0, 0.0)]


# -- specs and detection -------------------------------------------------------------------------------


def test_specs_and_detection(tmp_path: Path) -> None:
    _files(tmp_path / "rav", ["Actor_01/03-01-05-01-01-01-01.wav", "Actor_02/03-01-03-01-01-01-02.wav"])
    _files(tmp_path / "emo", ["03a01Fa.wav", "08a02Wb.wav"])
    _files(tmp_path / "crema", ["1001_DFA_ANG_XX.wav"])
    _files(tmp_path / "tess", ["TESS data/OAF_angry/OAF_back_angry.wav"])
    _files(tmp_path / "savee", ["DC/a01.wav", "JE/h02.wav"])
    _files(tmp_path / "kaggle", ["Suprised/x.wav", "Angry/y.wav"])
    _files(tmp_path / "labels", ["happy/x.wav", "sad/y.wav"])
    (tmp_path / "list.csv").write_text("path,label\nlabels/happy/x.wav,happy\n")
    expected = {
        "rav": "ravdess",
        "emo": "emodb",
        "crema": "cremad",
        "tess": "tess",
        "savee": "savee",
        "kaggle": "audio_emotions",
        "labels": "folder",
        "list.csv": "csv",
    }
    for name, kind in expected.items():
        assert detect_corpus(tmp_path / name) == kind, name
        assert len(load_corpus(str(tmp_path / name)).records) >= 1
    assert load_corpus(f"emodb:{tmp_path / 'emo'}").report.per_emotion == Counter({"happy": 1, "angry": 1})
    assert load_corpus(f"crema-d:{tmp_path / 'crema'}").records[0].speaker == "cremad:1001"
    assert len(load_corpus(f"ravdess:{tmp_path / 'rav'}", vocal="speech").records) == 2
    both = load_corpora([f"ravdess:{tmp_path / 'rav'}", f"emodb:{tmp_path / 'emo'}"])
    assert len(both.records) == 4 and both.report.per_corpus == Counter({"ravdess": 2, "emodb": 2})
    _files(tmp_path / "mystery", ["one.wav"])
    with pytest.raises(ValueError, match="not recognised"):
        load_corpus(str(tmp_path / "mystery"))
    with pytest.raises(ValueError, match="no such path"):
        load_corpus(str(tmp_path / "absent"))


# -- splits --------------------------------------------------------------------------------------------

EMOTIONS = ("angry", "happy", "sad", "neutral")


def _records(corpus: str, speakers: int, per_class: int = 3, emotions: tuple[str, ...] = EMOTIONS) -> list[AudioRecord]:
    return [
        AudioRecord(Path(f"{corpus}/{s}/{e}{i}.wav"), e, f"{corpus}:{s:02d}", corpus)
        for s, e, i in itertools.product(range(speakers), emotions, range(per_class))
    ]


def _speakers(records: list[AudioRecord]) -> set[str]:
    return {r.speaker for r in records}


def test_speaker_independent_split_has_no_leak_and_every_class() -> None:
    records = _records("ravdess", 16) + _records("emodb", 10)
    for seed in range(5):
        split = speaker_independent_split(records, 0.2, seed)
        assert not _speakers(split.train) & _speakers(split.val)
        assert split.leaked_speakers() == set()
        assert len(split.train) + len(split.val) == len(records)
        assert set(r.emotion for r in split.val) == set(EMOTIONS)
        assert {r.corpus for r in split.val} == {"ravdess", "emodb"}
        assert abs(len(split.val) / len(records) - 0.2) < 0.05
        assert split.rule.startswith("speaker-independent")
    again = speaker_independent_split(records, 0.2, 3)
    assert [r.path for r in again.val] == [r.path for r in speaker_independent_split(records, 0.2, 3).val]
    picks = {tuple(sorted(_speakers(speaker_independent_split(records, 0.2, s).val))) for s in range(5)}
    assert len(picks) > 1  # the seed matters


def test_few_speakers_go_whole_and_rare_classes_stay_in_training() -> None:
    split = speaker_independent_split(_records("tess", 2), 0.2, 0)
    assert len(_speakers(split.val)) == 1 and len(_speakers(split.train)) == 1
    savee = _records("savee", 4)
    split = speaker_independent_split(savee, 0.2, 0)
    assert len(_speakers(split.val)) == 1 and len(split.val) == len(savee) // 4
    # "fearful" only exists for speaker 00: it must stay in training
    records = [*_records("x", 6), AudioRecord(Path("f.wav"), "fearful", "x:00", "x")]
    for seed in range(5):
        split = speaker_independent_split(records, 0.3, seed)
        assert "fearful" in {r.emotion for r in split.train}
    with pytest.raises(ValueError, match="two speakers"):
        speaker_independent_split(_records("x", 1), 0.2)
    with pytest.raises(ValueError, match="val_fraction"):
        speaker_independent_split(savee, 1.0)


def test_split_stratifies_on_taxonomy_classes() -> None:
    tax = get_taxonomy("seed3")
    records, _ = tax.apply(_records("c", 10, emotions=("angry", "happy", "sad", "fearful")))
    split = speaker_independent_split(records, 0.2, 0, label=lambda r: tax.class_of(r.emotion))
    assert {tax.class_of(r.emotion) for r in split.val} == {"angry", "happy", "sad"}
    assert [r.path for r in speaker_independent_split(records, 0.2, 0, label=tax).val] == [r.path for r in split.val]
    text = split.describe(label=tax)
    assert "speaker-independent" in text and "speakers on both sides: 0" in text
    assert split.to_dict(label=tax)["val"]["classes"]["sad"] > 0


def test_unknown_speakers_are_split_per_clip_and_say_so() -> None:
    records = [
        AudioRecord(Path(f"{e}/{i}.wav"), e, f"folder:?{e}/{i}.wav", "folder", speaker_known=False)
        for e in EMOTIONS
        for i in range(10)
    ]
    split = speaker_independent_split(records, 0.25, 0)
    assert len(split.val) == 10
    assert "40 clips of unknown speaker" in split.rule


def test_random_split_marks_itself_and_leaks() -> None:
    records = _records("ravdess", 8)
    split = random_split(records, 0.25, 0)
    assert split.rule == "random (NOT speaker-independent)"
    assert len(split.val) == len(records) // 4
    assert Counter(r.emotion for r in split.val) == Counter({e: 6 for e in EMOTIONS})
    assert split.leaked_speakers()  # the point of the label
    assert "NOT speaker-independent" in split.describe()
    assert [r.path for r in random_split(records, 0.25, 0).val] == [r.path for r in split.val]


def test_leave_corpus_out_drops_training_copies_of_test_speakers() -> None:
    ravdess = _records("ravdess", 3)
    emodb = _records("emodb", 2)
    # a compilation holding RAVDESS clips: same speaker ids as the test corpus
    compilation = [AudioRecord(Path(f"k/{i}.wav"), "angry", "ravdess:01", "audio_emotions") for i in range(4)] + [
        AudioRecord(Path("k/t.wav"), "sad", "tess:OAF", "audio_emotions")
    ]
    split = leave_corpus_out(ravdess + emodb + compilation, "ravdess")
    assert {r.corpus for r in split.val} == {"ravdess"} and len(split.val) == len(ravdess)
    assert {r.corpus for r in split.train} == {"emodb", "audio_emotions"}
    assert split.leaked_speakers() == set()
    assert "4 training clips of test speakers dropped" in split.rule
    only = leave_corpus_out(ravdess + emodb + compilation, "emodb", ["ravdess"])
    assert only.rule == "cross-corpus: train on ravdess, test on emodb"
    assert make_split(ravdess + emodb, "corpus:emodb").rule == "cross-corpus: train on ravdess, test on emodb"
    with pytest.raises(ValueError, match="savee"):
        leave_corpus_out(ravdess, "savee")
    with pytest.raises(ValueError, match="unknown split rule"):
        make_split(ravdess, "by-mood")


# -- clip dataset --------------------------------------------------------------------------------------


def test_clip_dataset_crops_pads_labels_and_is_seeded(tmp_path: Path) -> None:
    from engine.audio.frontend import FrontEndConfig

    config = FrontEndConfig(window_s=0.25)
    n = config.n_samples
    long = _wav(tmp_path / "Actor_01" / "03-01-05-02-01-01-01.wav", seconds=0.6, sr=22050, seed=1)
    short = _wav(tmp_path / "Actor_01" / "03-01-04-01-01-01-01.wav", seconds=0.1, sr=22050, seed=2)
    _wav(tmp_path / "Actor_01" / "03-01-07-01-01-01-01.wav", seconds=0.1, sr=22050)  # disgust: dropped
    records, _ = load_ravdess(tmp_path)
    tax = get_taxonomy("default")
    # trim=False: trim_silence is the engine's (tested there) and librosa's first call costs seconds
    ds = ClipDataset(records, tax, config=config, train=False, trim=False)
    assert len(ds) == 2
    items = {ds.records[i].path: ds[i] for i in range(len(ds))}
    angry, sad = items[long], items[short]
    assert angry["audio"].shape == (n,) and angry["audio"].dtype == np.float32
    assert angry["label"] == tax.classes.index("angry") and sad["label"] == tax.classes.index("sad")
    np.testing.assert_allclose(angry["va"], circumplex_va("angry", "strong"), atol=1e-6)
    assert angry["has_va"]
    assert np.all(sad["audio"][int(0.1 * 22050) + 1 :] == 0)  # evaluation pads at the end

    train = ClipDataset(records, tax, config=config, train=True, seed=7, trim=False, augment=lambda a, rng: a * 0.5)
    first = train[0]["audio"]
    np.testing.assert_array_equal(first, train[0]["audio"])  # same (seed, epoch, index) -> same crop
    assert np.max(np.abs(first)) <= 0.5 * np.max(np.abs(angry["audio"])) + 1e-6  # augmentation applied
    crops = set()
    for epoch in range(4):
        train.set_epoch(epoch)
        crops.add(train[[r.path for r in train.records].index(long)]["audio"].tobytes())
    assert len(crops) > 1
