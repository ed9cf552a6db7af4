"""The LLM answerer: retrieved scenes -> a grounded, time-stamped prompt within a token budget ->
a pluggable chat model -> an answer whose ``[video @ mm:ss-mm:ss]`` citations map back to hits."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from egorag.config import AnswerConfig
from egorag.errors import LLMError, ModelLoadError
from egorag.hits import Hit
from egorag.times import mmss

logger = logging.getLogger("egorag")

SYSTEM_PROMPT = (
    "You answer questions about a collection of videos using only the evidence given: time-stamped "
    "transcripts, captions and on-screen text of retrieved scenes. Cite every statement with the tag of the scene it "
    "comes from, exactly as written, e.g. [kitchen.mp4 @ 01:05-01:32]. If the evidence does not contain "
    "the answer, say that it does not."
)

Message = dict[str, str]


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate (about 4 characters per token for English)."""
    return math.ceil(len(text) / 4)


def video_labels(hits: Sequence[Hit]) -> dict[str, str]:
    """A short label per video for the citation tags: its file name, or, for videos that share
    a file name (two ``clip.mp4`` in different folders), the name and the start of the video's
    id (``clip.mp4~3fa2c1``), long enough that every tag names one video."""
    names: dict[str, str] = {}
    for h in hits:
        names.setdefault(h.video_id, Path(h.video).name)
    shared = Counter(names.values())
    labels = {}
    for name in shared:
        ids = [v for v, n in names.items() if n == name]
        width = 6
        while len({v[:width] for v in ids}) < len(ids):
            width += 2
        labels.update({v: name if len(ids) == 1 else f"{name}~{v[:width]}" for v in ids})
    return labels


def scene_tag(hit: Hit, labels: dict[str, str] | None = None) -> str:
    label = (labels or {}).get(hit.video_id) or Path(hit.video).name
    return f"[{label} @ {mmss(hit.start)}-{mmss(hit.end)}]"


def evidence_block(hit: Hit, labels: dict[str, str] | None = None) -> str:
    lines = [scene_tag(hit, labels)]
    if hit.moment is not None:
        where = {"screen": f" (shown: {hit.moment_text})", "speech": f" (said: {hit.moment_text})"}.get(hit.moment_source, "")
        lines.append(f"best match at: {mmss(hit.moment)}{where}")
    if hit.transcript:
        lines.append(f"transcript: {hit.transcript}")
    if hit.caption:
        lines.append(f"caption: {hit.caption}")
    if hit.screen_text:
        lines.append(f"on screen: {' / '.join(hit.screen_text.splitlines())}")
    if hit.speakers:
        lines.append(f"speakers: {', '.join(hit.speakers)}")
    if hit.audio_events:
        lines.append(f"sounds: {', '.join(hit.audio_events)}")
    if len(lines) == 1:
        lines.append("(no speech, caption or text on screen; matched visually or by sound)")
    return "\n".join(lines)


def build_prompt(question: str, hits: Sequence[Hit], budget_tokens: int) -> tuple[list[Message], list[Hit]]:
    """Chat messages with the best-ranked evidence that fits ``budget_tokens``; the last block
    that does not fit whole is cut at a word boundary. Returns the messages and the hits used."""
    first = video_labels(hits)
    blocks, used = _blocks(hits, first, budget_tokens)
    labels = video_labels(used)  # what the answer's citations are read back with
    if any(labels[h.video_id] != first[h.video_id] for h in used):
        blocks, used = _blocks(used, labels, budget_tokens)  # a name was shared only with a video left out
    evidence = "\n\n".join(blocks) if blocks else "(no matching scenes were found)"
    user = f"Evidence:\n\n{evidence}\n\nQuestion: {question}\nAnswer with citations:"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}], used


def _blocks(hits: Sequence[Hit], labels: dict[str, str], budget_tokens: int) -> tuple[list[str], list[Hit]]:
    """The evidence blocks of the best-ranked hits that fit ``budget_tokens``, and those hits."""
    blocks, used, left = [], [], budget_tokens
    for hit in hits:
        block = evidence_block(hit, labels)
        cost = estimate_tokens(block) + 2
        if cost > left:
            if left > 40:  # room for a meaningful part of it
                cut = block[: max(0, left * 4 - 8)].rsplit(" ", 1)[0] + " ..."
                blocks.append(cut)
                used.append(hit)
            break
        blocks.append(block)
        used.append(hit)
        left -= cost
    return blocks, used


class ChatModel(Protocol):
    def chat(self, messages: list[Message], max_tokens: int, temperature: float) -> str: ...


class OpenAIChatClient:
    """Any server speaking the OpenAI chat completions API (vLLM, llama.cpp server, Ollama)."""

    def __init__(self, endpoint: str, model: str, api_key: str | None = None, timeout_s: float = 120.0):
        self.url = endpoint.rstrip("/") + "/chat/completions"
        self.model, self.api_key, self.timeout_s = model, api_key, timeout_s

    def chat(self, messages: list[Message], max_tokens: int, temperature: float) -> str:
        body = json.dumps({"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise LLMError(f"LLM endpoint {self.url} answered HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise LLMError(
                f"could not reach the LLM endpoint {self.url} ({reason}); start an OpenAI-compatible server "
                "or set [answer] endpoint"
            ) from None
        try:
            return payload["choices"][0]["message"]["content"].strip()
        except (KeyError, IndexError, TypeError, AttributeError):
            raise LLMError(f"LLM endpoint {self.url} returned an unexpected body: {str(payload)[:300]}") from None


class TransformersChatClient:
    """A local transformers chat model (its tokenizer must carry a chat template)."""

    def __init__(self, model: str, device: str = "auto"):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from egorag.devices import resolve_device
        from egorag.weights import load_error, resolve_model

        resolved = resolve_model(model)
        try:
            tokenizer = AutoTokenizer.from_pretrained(resolved.location, local_files_only=resolved.is_local)
            lm = AutoModelForCausalLM.from_pretrained(resolved.location, local_files_only=resolved.is_local)
        except Exception as exc:  # hub, file and config errors all mean "could not load"
            raise load_error("chat model", resolved, exc, "set [answer] model to a local transformers chat model directory") from exc
        self._setup(lm.to(resolve_device(device)), tokenizer)

    @classmethod
    def from_model(cls, model, tokenizer) -> TransformersChatClient:
        self = cls.__new__(cls)
        self._setup(model, tokenizer)
        return self

    def _setup(self, model, tokenizer) -> None:
        import torch

        if not getattr(tokenizer, "chat_template", None):
            raise ModelLoadError("the chat model's tokenizer has no chat template; use an instruction-tuned model")
        self._torch, self.model, self.tokenizer = torch, model.eval(), tokenizer

    def chat(self, messages: list[Message], max_tokens: int, temperature: float) -> str:
        inputs = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        inputs = {k: v.to(self.model.device) for k, v in inputs.items()}
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        with self._torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=max_tokens, **sampling)
        return self.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def create_chat_model(config: AnswerConfig) -> ChatModel | None:
    if config.llm == "none":
        return None
    if config.llm == "openai":
        return OpenAIChatClient(config.endpoint, config.model, os.environ.get(config.api_key_env), config.timeout_s)
    return TransformersChatClient(config.model, config.device)


@dataclass(frozen=True)
class Answer:
    question: str
    answer: str | None  # None when no LLM was asked (--no-llm)
    cited: list[Hit] = field(default_factory=list)
    evidence: list[Hit] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)

    def tag(self, hit: Hit) -> str:
        """``hit``'s citation tag, as the prompt wrote it."""
        return scene_tag(hit, video_labels(self.evidence))

    def to_dict(self) -> dict:
        labels = video_labels(self.evidence)
        return {
            "question": self.question,
            "answer": self.answer,
            "cited": [dict(h.to_dict(), tag=scene_tag(h, labels)) for h in self.cited],
            "evidence": [dict(h.to_dict(), tag=scene_tag(h, labels)) for h in self.evidence],
            "messages": self.messages,
        }


def cited_hits(text: str, evidence: Sequence[Hit]) -> list[Hit]:
    """The evidence hits whose tags the answer cites, in order of first citation (tags as the
    prompt wrote them: :func:`video_labels`)."""
    labels = video_labels(evidence)
    by_tag = {scene_tag(h, labels): h for h in evidence}
    out: list[Hit] = []
    for tag in re.findall(r"\[[^\[\]]+ @ [0-9:]+-[0-9:]+\]", text):
        hit = by_tag.get(tag)
        if hit is not None and hit not in out:
            out.append(hit)
    return out


def answer(question: str, hits: Sequence[Hit], chat: ChatModel | None, config: AnswerConfig) -> Answer:
    messages, used = build_prompt(question, hits, config.context_tokens)
    if chat is None:
        return Answer(question, None, [], used, messages)
    text = chat.chat(messages, config.max_answer_tokens, config.temperature)
    return Answer(question, text, cited_hits(text, used), used, messages)
