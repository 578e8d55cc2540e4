"""corral.gguf: the validating GGUF reader, on the real SmolLM2 file and on many malformed ones."""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence
from pathlib import Path

import gguf
import numpy as np
import pytest

from corral.errors import InvalidModelFile
from corral.gguf import (
    FILE_TYPES,
    GGML_TYPES,
    GGUFFile,
    Limits,
    SkippedArray,
    ValueType,
    human_number,
    read_gguf,
)

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
F32_TYPE, Q8_0_TYPE = 0, 8


# --- a hand-built GGUF writer, so that every byte can be controlled -------------------------------


def s(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def kv(key: str | bytes, vtype: int, payload: bytes) -> bytes:
    return s(key) + struct.pack("<I", vtype) + payload


def arr(etype: int, count: int, payload: bytes) -> bytes:
    return struct.pack("<IQ", etype, count) + payload


def tensor(name: str | bytes, shape: tuple[int, ...], ggml_type: int, offset: int) -> bytes:
    return (
        s(name)
        + struct.pack("<I", len(shape))
        + b"".join(struct.pack("<Q", d) for d in shape)
        + struct.pack("<IQ", ggml_type, offset)
    )


def build(
    kvs: list[bytes],
    tensors: Sequence[bytes] = (),
    data: bytes = b"",
    *,
    version: int = 3,
    n_tensors: int | None = None,
    n_kv: int | None = None,
    alignment: int = 32,
) -> bytes:
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                                len(kvs) if n_kv is None else n_kv)
    out += b"".join(kvs) + b"".join(tensors)
    if tensors:
        out += b"\0" * (-len(out) % alignment)
    return out + data


def base_kvs() -> list[bytes]:
    return [
        kv("general.architecture", STR, s("llama")),
        kv("general.name", STR, s("tiny")),
        kv("general.file_type", U32, struct.pack("<I", 7)),
        kv("llama.context_length", U32, struct.pack("<I", 2048)),
        kv("llama.embedding_length", U64, struct.pack("<Q", 64)),
        kv("llama.rope.freq_base", F32, struct.pack("<f", 10000.0)),
        kv("llama.attention.layer_norm_rms_epsilon", F32, struct.pack("<f", 1e-5)),
        kv("test.u8", U8, b"\xff"),
        kv("test.i8", I8, b"\xff"),
        kv("test.u16", U16, struct.pack("<H", 65535)),
        kv("test.i16", I16, struct.pack("<h", -2)),
        kv("test.i32", I32, struct.pack("<i", -3)),
        kv("test.i64", I64, struct.pack("<q", -(1 << 40))),
        kv("test.f64", F64, struct.pack("<d", 0.1)),
        kv("test.bool", BOOL, b"\x01"),
        kv("tokenizer.ggml.tokens", ARR, arr(STR, 3, s("a") + s("bc") + s("<s>"))),
        kv("tokenizer.ggml.scores", ARR, arr(F32, 3, struct.pack("<3f", 0.5, -1.0, 0.25))),
        kv("tokenizer.ggml.token_type", ARR, arr(I32, 3, struct.pack("<3i", 1, 1, 3))),
        kv("test.flags", ARR, arr(BOOL, 2, b"\x00\x01")),
        kv("test.empty", ARR, arr(U64, 0, b"")),
        kv("tokenizer.chat_template", STR, s("{{ messages }}")),
    ]


def base_tensors() -> tuple[list[bytes], bytes]:
    infos = [
        tensor("token_embd.weight", (32, 2), Q8_0_TYPE, 0),  # 2 blocks of 34 bytes, padded to 96
        tensor("output_norm.weight", (4,), F32_TYPE, 96),
    ]
    data = b"\x11" * 68 + b"\0" * 28 + struct.pack("<4f", 1, 2, 3, 4)
    return infos, data


def valid_bytes() -> bytes:
    infos, data = base_tensors()
    return build(base_kvs(), infos, data)


def write(tmp_path: Path, content: bytes, name: str = "x.gguf") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def invalid(tmp_path: Path, content: bytes, **kwargs) -> str:
    """Read ``content`` and return the InvalidModelFile message it must raise."""
    path = write(tmp_path, content)
    with pytest.raises(InvalidModelFile) as caught:
        read_gguf(path, **kwargs)
    message = str(caught.value)
    assert message.startswith('invalid GGUF file "x.gguf": '), message
    assert "could not be parsed" not in message, message  # the safety net was never meant to fire
    return message


# --- the real model ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def smollm2(smollm2_gguf: Path) -> GGUFFile:
    return read_gguf(smollm2_gguf)


@pytest.fixture(scope="session")
def smollm2_reference(smollm2_gguf: Path) -> gguf.GGUFReader:
    return gguf.GGUFReader(smollm2_gguf)


def test_smollm2_summary(smollm2: GGUFFile) -> None:
    assert smollm2.version == 3
    assert smollm2.architecture == "llama"
    assert smollm2.context_length == 8192
    assert smollm2.embedding_length == 576
    assert smollm2.file_type == "Q4_1"
    assert smollm2.pooling_type is None
    assert smollm2.chat_template is not None and "<|im_start|>" in smollm2.chat_template
    assert smollm2.alignment == 32
    assert human_number(smollm2.parameter_count) == "134.52M"
    assert smollm2.metadata["llama.attention.layer_norm_rms_epsilon"] == 1e-05  # shortest float32


def test_smollm2_matches_the_gguf_package(smollm2: GGUFFile, smollm2_reference: gguf.GGUFReader) -> None:
    reference = smollm2_reference
    assert smollm2.parameter_count == sum(int(t.n_elements) for t in reference.tensors)
    assert smollm2.data_offset == reference.data_offset
    assert len(smollm2.tensors) == len(reference.tensors)
    for ours, theirs in zip(smollm2.tensors, reference.tensors, strict=True):
        assert ours.name == theirs.name
        assert list(ours.shape) == [int(d) for d in theirs.shape]
        assert ours.type == theirs.tensor_type.name
        assert smollm2.data_offset + ours.offset == theirs.data_offset
        assert ours.size == int(theirs.n_bytes)
        assert ours.n_elements == int(theirs.n_elements)
    fields = {k: f for k, f in reference.fields.items() if not k.startswith("GGUF.")}
    assert list(smollm2.metadata) == list(fields)
    for key, field in fields.items():
        value = field.contents()
        if field.types[0] == gguf.GGUFValueType.FLOAT32:
            assert np.float32(smollm2.metadata[key]) == np.float32(value), key
        else:
            assert smollm2.metadata[key] == value, key


def test_smollm2_with_arrays_skipped(smollm2_gguf: Path, smollm2: GGUFFile) -> None:
    # What /api/show without verbose reads: it walks the vocabulary but keeps none of it.
    quick = read_gguf(smollm2_gguf, skip_arrays_longer_than=0)
    assert quick.metadata["tokenizer.ggml.tokens"] == SkippedArray(type="string", length=49152)
    assert quick.metadata["tokenizer.ggml.merges"] == SkippedArray(type="string", length=48900)
    assert quick.metadata["tokenizer.ggml.token_type"] == SkippedArray(type="int32", length=49152)
    assert quick.metadata["general.languages"] == SkippedArray(type="string", length=1)
    assert quick.tensors == smollm2.tensors
    for key, value in smollm2.metadata.items():
        if not isinstance(value, list):
            assert quick.metadata[key] == value
    keep_short = read_gguf(smollm2_gguf, skip_arrays_longer_than=5)
    assert keep_short.metadata["general.languages"] == ["en"]
    assert isinstance(keep_short.metadata["tokenizer.ggml.tokens"], SkippedArray)


def test_reading_never_touches_tensor_data(tmp_path: Path) -> None:
    # A sparse file declaring a 4 GiB tensor: the reader must only look at the metadata.
    content = build(base_kvs(), [tensor("big.weight", (1 << 30,), F32_TYPE, 0)])
    path = write(tmp_path, content)
    with path.open("r+b") as file:
        file.truncate(len(content) + (4 << 30))
    info = read_gguf(path, skip_arrays_longer_than=0)
    assert info.tensors[0].size == 4 << 30
    assert info.parameter_count == 1 << 30
    assert human_number(info.parameter_count) == "1.1B"


# --- tables against the gguf package --------------------------------------------------------------


def test_ggml_types_match_the_gguf_package() -> None:
    for qtype, (block, type_size) in gguf.GGML_QUANT_SIZES.items():
        assert GGML_TYPES[int(qtype)] == (qtype.name, block, type_size)
    assert set(GGML_TYPES) == {int(q) for q in gguf.GGML_QUANT_SIZES}


def test_file_types_match_llama_ftype() -> None:
    for ftype in gguf.LlamaFileType:
        if ftype is gguf.LlamaFileType.GUESSED:
            continue
        assert FILE_TYPES[int(ftype)] == ftype.name.removeprefix("MOSTLY_").removeprefix("ALL_")
    assert FILE_TYPES[4] == "MXFP4"  # Ollama's own use of the retired Q4_1_SOME_F16 slot


def test_value_types_match_the_gguf_package() -> None:
    assert {t.name: int(t) for t in ValueType} == {t.name: int(t) for t in gguf.GGUFValueType}


# --- human_number ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        # ollama format/format_test.go
        (0, "0"),
        (999, "999"),
        (1000, "1K"),
        (1001, "1K"),
        (1000000, "1M"),
        (125000000, "125M"),
        (500500000, "500.50M"),
        (500550000, "500.55M"),
        (1000000000, "1B"),
        (2800000000, "2.8B"),
        (2850000000, "2.9B"),
        (1000000000000, "1000B"),
        # shared/reference/ollama-api.md section 4.4
        (8030261248, "8.0B"),
        (7000000000, "7B"),
        (3210000000, "3.2B"),
        (137450000, "137.45M"),
        (1500, "2K"),  # Go's %.0f rounds half to even, as Python's does
        (2500, "2K"),
        (999999999, "1000.00M"),
    ],
)
def test_human_number(count: int, expected: str) -> None:
    assert human_number(count) == expected


# --- valid hand-built and gguf-package files ---------------------------------------------------------


def test_hand_built_file_reads_back(tmp_path: Path) -> None:
    info = read_gguf(write(tmp_path, valid_bytes()))
    m = info.metadata
    assert m["general.architecture"] == "llama"
    assert m["test.u8"] == 255 and m["test.i8"] == -1 and m["test.u16"] == 65535
    assert m["test.i16"] == -2 and m["test.i32"] == -3 and m["test.i64"] == -(1 << 40)
    assert m["test.f64"] == 0.1 and m["test.bool"] is True
    assert m["llama.attention.layer_norm_rms_epsilon"] == 1e-05
    assert m["tokenizer.ggml.tokens"] == ["a", "bc", "<s>"]
    assert m["tokenizer.ggml.scores"] == [0.5, -1.0, 0.25]
    assert m["tokenizer.ggml.token_type"] == [1, 1, 3]
    assert m["test.flags"] == [False, True]
    assert m["test.empty"] == []
    assert info.file_type == "Q8_0"
    assert info.context_length == 2048 and info.embedding_length == 64
    assert info.chat_template == "{{ messages }}"
    assert [(t.name, t.shape, t.type, t.offset, t.size) for t in info.tensors] == [
        ("token_embd.weight", (32, 2), "Q8_0", 0, 68),
        ("output_norm.weight", (4,), "F32", 96, 16),
    ]
    assert info.parameter_count == 68
    assert info.data_offset % 32 == 0 and info.data_offset + 112 == info.file_size

    skipped = read_gguf(write(tmp_path, valid_bytes()), skip_arrays_longer_than=2)
    assert skipped.metadata["tokenizer.ggml.tokens"] == SkippedArray(type="string", length=3)
    assert skipped.metadata["tokenizer.ggml.scores"] == SkippedArray(type="float32", length=3)
    assert skipped.metadata["test.flags"] == [False, True]
    assert skipped.metadata["test.u8"] == 255


def test_version_2_and_no_tensors(tmp_path: Path) -> None:
    info = read_gguf(write(tmp_path, build(base_kvs(), version=2)))
    assert info.version == 2 and info.tensors == () and info.parameter_count == 0


def test_helpers_ignore_wrongly_typed_values(tmp_path: Path) -> None:
    kvs = [
        kv("general.architecture", STR, s("bert")),
        kv("bert.context_length", STR, s("512")),
        kv("bert.embedding_length", BOOL, b"\x01"),
        kv("bert.pooling_type", U32, struct.pack("<I", 1)),
        kv("general.file_type", U32, struct.pack("<I", 999)),
    ]
    info = read_gguf(write(tmp_path, build(kvs)))
    assert info.context_length is None and info.embedding_length is None
    assert info.pooling_type == 1
    assert info.file_type == "unknown"
    assert info.chat_template is None
    assert read_gguf(write(tmp_path, build([]))).architecture is None


def test_invalid_utf8_in_values_is_replaced(tmp_path: Path) -> None:
    kvs = [
        kv("general.name", STR, s(b"caf\xc3")),
        kv("tokenizer.ggml.tokens", ARR, arr(STR, 2, s(b"\xff") + s("ok"))),
    ]
    info = read_gguf(write(tmp_path, build(kvs)))
    assert info.metadata["general.name"] == "caf\ufffd"
    assert info.metadata["tokenizer.ggml.tokens"] == ["\ufffd", "ok"]


def test_large_chat_template_is_allowed_but_not_other_large_strings(tmp_path: Path) -> None:
    template = "x" * (2 << 20)
    info = read_gguf(write(tmp_path, build([kv("tokenizer.chat_template", STR, s(template))])))
    assert info.chat_template == template
    message = invalid(tmp_path, build([kv("general.name", STR, s(template))]))
    assert "string value of 'general.name' length 2097152 at offset 48 exceeds the limit of 1048576 bytes" in message


def test_gguf_package_writer_output(tmp_path: Path) -> None:
    path = tmp_path / "w.gguf"
    writer = gguf.GGUFWriter(path, "qwen2")
    writer.add_context_length(32768)
    writer.add_embedding_length(896)
    writer.add_pooling_type(gguf.PoolingType.MEAN)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    writer.add_custom_alignment(64)
    writer.add_token_list(["<a>", "b", "ç"])
    writer.add_token_scores([0.1, 0.2, 0.3])
    writer.add_array("test.ints", [1, 2, 3])
    writer.add_tensor("a.weight", np.ones((3, 5), dtype=np.float32))
    writer.add_tensor("b.weight", np.ones((7,), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    info = read_gguf(path)
    reference = gguf.GGUFReader(path)
    assert info.architecture == "qwen2"
    assert info.context_length == 32768 and info.embedding_length == 896
    assert info.pooling_type == int(gguf.PoolingType.MEAN)
    assert info.file_type == "Q4_K_M"
    assert info.alignment == 64 and info.data_offset == reference.data_offset
    assert info.metadata["tokenizer.ggml.tokens"] == ["<a>", "b", "ç"]
    assert info.metadata["tokenizer.ggml.scores"] == [0.1, 0.2, 0.3]
    assert [(t.name, t.shape, t.type) for t in info.tensors] == [("a.weight", (5, 3), "F32"), ("b.weight", (7,), "F16")]
    assert info.parameter_count == 22


# --- malformed files ------------------------------------------------------------------------------

HUGE = (1 << 64) - 1


def with_kv(extra: bytes) -> bytes:
    return build([*base_kvs(), extra])


def with_tensors(*infos: bytes, data: bytes = b"\0" * 256) -> bytes:
    return build(base_kvs(), list(infos), data)


MALFORMED: dict[str, tuple[bytes, str]] = {
    "empty file": (b"", "too short for a GGUF header"),
    "bad magic": (b"GGML" + valid_bytes()[4:], "bad magic b'GGML'"),
    "header cut after the magic": (b"GGUF\x03\0", "version at offset 4 needs 4 bytes but the file ends at 6"),
    "version 1": (build(base_kvs(), version=1), "unsupported GGUF version 1"),
    "version 4": (build(base_kvs(), version=4), "unsupported GGUF version 4"),
    "version 0": (build(base_kvs(), version=0), "unsupported GGUF version 0"),
    "big-endian": (build(base_kvs(), version=3 << 24), "big-endian GGUF files are not supported"),
    "header cut in the counts": (b"GGUF" + struct.pack("<IQ", 3, 0) + b"\0\0", "metadata count at offset 16"),
    "absurd tensor count": (build(base_kvs(), n_tensors=HUGE), f"tensor count {HUGE} exceeds the limit"),
    "absurd metadata count": (build(base_kvs(), n_kv=HUGE), f"metadata count {HUGE} exceeds the limit"),
    "counts larger than the file": (build(base_kvs(), n_kv=60000), "60000 metadata entries and 0 tensors need at least"),
    "key length 2^32-1": (
        build([struct.pack("<Q", 0xFFFFFFFF) + b"\0" * 32], n_kv=2),
        "metadata key #0 length 4294967295 at offset 24 exceeds the limit of 4096 bytes",
    ),
    "key longer than the file": (
        build([struct.pack("<Q", 100) + b"abc" * 5], n_kv=1),
        "metadata key #0 at offset 32 needs 100 bytes but the file ends at 47",
    ),
    "empty key": (build([kv("", U32, b"\0" * 4)]), "metadata key #0 at offset 24 is empty"),
    "key not UTF-8": (build([kv(b"gen\xff", U8, b"\0")]), "metadata key #0 at offset 24 is not valid UTF-8"),
    "duplicate key": (with_kv(kv("general.name", STR, s("again"))), "duplicate metadata key 'general.name'"),
    "unknown value type": (with_kv(kv("test.x", 13, b"\0" * 8)), "unknown value type of 'test.x' 13"),
    "value type 2^32-1": (with_kv(kv("test.x", 0xFFFFFFFF, b"\0" * 8)), "unknown value type of 'test.x' 4294967295"),
    "string length 2^32-1": (
        build([kv("general.name", STR, struct.pack("<Q", 0xFFFFFFFF))]),
        "string value of 'general.name' length 4294967295 at offset 48 exceeds the limit of 1048576 bytes",
    ),
    "string length 2^64-1": (
        build([kv("general.name", STR, struct.pack("<Q", HUGE))]),
        f"length {HUGE} at offset 48 exceeds the limit",
    ),
    "string past the end": (
        build([kv("general.name", STR, struct.pack("<Q", 1000) + b"abc")]),
        "string value of 'general.name' at offset 56 needs 1000 bytes but the file ends at 59",
    ),
    "scalar cut short": (build([kv("test.u64", U64, b"\1\2")]), "value of 'test.u64' at offset 44 needs 8 bytes but the file ends at 46"),
    "nested array": (with_kv(kv("test.a", ARR, arr(ARR, 1, arr(U8, 1, b"\0")))), "is an array of arrays"),
    "unknown array element type": (
        with_kv(kv("test.a", ARR, arr(77, 1, b"\0"))),
        "unknown element type of array 'test.a' 77",
    ),
    "array length over the limit": (
        with_kv(kv("test.a", ARR, arr(U8, (1 << 24) + 1, b""))),
        "length 16777217 of array 'test.a' at offset",
    ),
    "array length 2^64-1": (with_kv(kv("test.a", ARR, arr(STR, HUGE, b""))), f"length {HUGE} of array 'test.a'"),
    "number array past the end": (
        with_kv(kv("test.a", ARR, arr(U32, 1_000_000, b"\0" * 16))),
        "array 'test.a' at offset",
    ),
    "string array longer than the file": (
        with_kv(kv("test.a", ARR, arr(STR, 1_000_000, s("x")))),
        "array 'test.a' of 1000000 strings cannot fit",
    ),
    "string array element too long": (
        with_kv(kv("test.a", ARR, arr(STR, 2, s("x") + struct.pack("<Q", 1 << 40)))),
        "string in array 'test.a' length 1099511627776 at offset",
    ),
    "string array element past the end": (
        with_kv(kv("test.a", ARR, arr(STR, 2, s("x") + struct.pack("<Q", 5000) + b"y"))),
        "string in array 'test.a' at offset",
    ),
    "alignment of the wrong type": (
        with_kv(kv("general.alignment", U64, struct.pack("<Q", 32))),
        "general.alignment must be a uint32, not uint64",
    ),
    "alignment zero": (with_kv(kv("general.alignment", U32, struct.pack("<I", 0))), "alignment 0 is not a power of two"),
    "alignment 48": (with_kv(kv("general.alignment", U32, struct.pack("<I", 48))), "alignment 48 is not a power of two"),
    "tensor name too long": (
        with_tensors(tensor("n" * 64, (4,), F32_TYPE, 0)),
        "name of tensor #0 length 64 at offset",
    ),
    "tensor name not UTF-8": (with_tensors(tensor(b"bad\xfe", (4,), F32_TYPE, 0)), "is not valid UTF-8"),
    "duplicate tensor name": (
        with_tensors(tensor("a", (4,), F32_TYPE, 0), tensor("a", (4,), F32_TYPE, 32)),
        "duplicate tensor name 'a'",
    ),
    "five dimensions": (with_tensors(tensor("a", (1, 1, 1, 1, 1), F32_TYPE, 0)), "tensor 'a' has 5 dimensions"),
    "dimension count 2^32-1": (
        with_tensors(s("a") + struct.pack("<I", 0xFFFFFFFF) + b"\0" * 64),
        "tensor 'a' has 4294967295 dimensions",
    ),
    "dims overflow": (
        with_tensors(tensor("a", (1 << 32, 1 << 32), F32_TYPE, 0)),
        "tensor 'a' shape [4294967296, 4294967296] overflows a 64-bit element count",
    ),
    "dim 2^64-1": (with_tensors(tensor("a", (HUGE,), F32_TYPE, 0)), "overflows a 64-bit element count"),
    "unknown ggml type": (with_tensors(tensor("a", (4,), 99, 0)), "tensor 'a' has unknown ggml type 99"),
    "retired ggml type": (with_tensors(tensor("a", (4,), 4, 0)), "tensor 'a' has unknown ggml type 4"),
    "row not a whole block": (
        with_tensors(tensor("a", (33,), Q8_0_TYPE, 0)),
        "rows of 33 elements are not a multiple of the Q8_0 block size 32",
    ),
    "misaligned offset": (
        with_tensors(tensor("a", (4,), F32_TYPE, 0), tensor("b", (4,), F32_TYPE, 17)),
        "tensor 'b' data offset 17 is not a multiple of the alignment 32",
    ),
    "offset past the end": (
        with_tensors(tensor("a", (4,), F32_TYPE, 1 << 40)),
        "tensor 'a' data (16 bytes at data offset 1099511627776) ends at",
    ),
    "offset 2^64 - 32": (with_tensors(tensor("a", (4,), F32_TYPE, HUGE - 31)), "past the end of the file"),
    "tensor larger than the file": (
        with_tensors(tensor("a", (1 << 20,), F32_TYPE, 0)),
        "tensor 'a' data (4194304 bytes at data offset 0) ends at",
    ),
    "overlapping tensors": (
        with_tensors(tensor("a", (64,), F32_TYPE, 0), tensor("b", (4,), F32_TYPE, 128)),
        "tensor 'b' data overlaps tensor 'a'",
    ),
    "no room for the data section": (
        build(base_kvs(), [tensor("a", (4,), F32_TYPE, 0)]),
        "ends at",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed(tmp_path: Path, case: str) -> None:
    content, expected = MALFORMED[case]
    message = invalid(tmp_path, content)
    assert expected in message


def test_limits_are_configurable(tmp_path: Path) -> None:
    content = valid_bytes()
    assert "past the limit of 100 bytes" in invalid(tmp_path, content, limits=Limits(max_metadata_bytes=100))
    assert "exceeds the limit of 2 elements" in invalid(tmp_path, content, limits=Limits(max_array_length=2))
    assert "tensor count 2 exceeds the limit of 1" in invalid(tmp_path, content, limits=Limits(max_tensor_count=1))
    assert "metadata count 21 exceeds the limit of 20" in invalid(tmp_path, content, limits=Limits(max_kv_count=20))
    assert "exceeds the limit of 3 bytes" in invalid(tmp_path, content, limits=Limits(max_string_bytes=3))


def test_skipped_arrays_are_still_validated(tmp_path: Path) -> None:
    for content, _ in (MALFORMED["string array element too long"], MALFORMED["number array past the end"]):
        invalid(tmp_path, content, skip_arrays_longer_than=0)


def test_display_name(tmp_path: Path) -> None:
    path = write(tmp_path, b"nope")
    with pytest.raises(InvalidModelFile, match='^invalid GGUF file "model.gguf": bad magic'):
        read_gguf(path, display_name="model.gguf")


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_gguf(tmp_path / "absent.gguf")


@pytest.mark.parametrize("skip", [None, 0])
def test_every_truncation_is_rejected(tmp_path: Path, skip: int | None) -> None:
    content = valid_bytes()
    assert read_gguf(write(tmp_path, content), skip_arrays_longer_than=skip).tensors
    for length in range(len(content)):
        invalid(tmp_path, content[:length], skip_arrays_longer_than=skip)


def fuzz(tmp_path: Path, content: bytes, rounds: int, seed: int) -> tuple[int, int]:
    rng = random.Random(seed)
    path = tmp_path / "x.gguf"
    accepted = rejected = 0
    metadata_end = read_gguf(write(tmp_path, content)).data_offset
    for _ in range(rounds):
        mutated = bytearray(content)
        for _ in range(rng.randint(1, 4)):
            # Mostly the metadata: flips in tensor data are valid files and test nothing.
            where = rng.randrange(metadata_end if rng.random() < 0.9 else len(mutated))
            mutated[where] = rng.choice((0, 0xFF, 0x80, rng.randrange(256), mutated[where] ^ (1 << rng.randrange(8))))
        if rng.random() < 0.1:
            mutated = mutated[: rng.randrange(len(mutated))]
        path.write_bytes(mutated)
        try:
            read_gguf(path, skip_arrays_longer_than=rng.choice((None, 0, 2)))
            accepted += 1
        except InvalidModelFile as exc:
            assert "could not be parsed" not in str(exc), str(exc)
            rejected += 1
    return accepted, rejected


def test_fuzz_byte_flips(tmp_path: Path) -> None:
    accepted, rejected = fuzz(tmp_path, valid_bytes(), rounds=3000, seed=20240611)
    assert accepted > 0 and rejected > 0


def test_fuzz_gguf_package_file(tmp_path: Path) -> None:
    path = tmp_path / "w.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_context_length(128)
    writer.add_token_list([f"t{i}" for i in range(20)])
    writer.add_token_types([1] * 20)
    writer.add_chat_template("{{ x }}")
    writer.add_tensor("a.weight", np.zeros((2, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    accepted, rejected = fuzz(tmp_path, path.read_bytes(), rounds=1500, seed=7)
    assert accepted > 0 and rejected > 0
