"""The audit log, for auditors and compliance: people's acts newest first, whether the chain is intact
against its signed heads, and the newest signed head (to keep, and check the log against later).

What the check proves is said on the page: entries up to the newest signed head are pinned; later
ones are chained but not proven; a signature counts only while the key is out of an attacker's reach.
"""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from flightrec.dashboards import api, holds, safe_text, ui
from flightrec.dashboards.safe_text import md

ANYONE, ANY_ACT = "Anyone", "Any act"
PROVES = """\
Each entry's hash covers its content and the previous entry's hash, and after every append the server
signs the newest (sequence number, hash) with its Ed25519 key, kept outside the store. So:

- removing or rewriting any entry **up to the newest signed head** is detected, even if every later hash
  was recomputed, and so is removing the newest entries (the server keeps its newest head in a file too);
- entries **after** the newest head you hold are chained but not proven: someone with write access to the
  store could rewrite them;
- a signature proves something only while the signing key is out of that someone's reach.

Download the head below and keep it: `flightrec audit verify --head head.json` checks the log against it later.
"""


def entry_rows(entries: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The entries table, every cell as text."""
    return safe_text.table({
        "#": [entry["seq"] for entry in entries],
        "Time (UTC)": [ui.when(entry["time"]) for entry in entries],
        "Actor": [entry["actor"] for entry in entries],
        "Act": [entry["act"] for entry in entries],
        "Subject": [entry["subject"] for entry in entries],
        "Details": [", ".join(f"{key}={value}" for key, value in sorted(entry["details"].items()))
                    for entry in entries],
        "Hash": [entry["hash"][:12] for entry in entries],
    })


def show_verdict(verdict: dict[str, Any]) -> None:
    entries = f"{verdict['entries']:,} {'entry' if verdict['entries'] == 1 else 'entries'}"
    if verdict["ok"]:
        st.success(f"The chain is intact: {entries}, signed through entry {verdict['signed_through']:,}.",
                   icon=":material/verified:")
    else:
        st.error(f"The chain is broken: {len(verdict['problems'])} problem"
                 f"{'' if len(verdict['problems']) == 1 else 's'} in {entries}.", icon=":material/gpp_bad:")
        st.markdown("\n".join(f"- {md(problem)}" for problem in verdict["problems"]))
    for note in verdict["notes"]:
        st.info(md(note), icon=":material/info:")


def show_head(answer: dict[str, Any]) -> None:
    head, key = answer["head"], answer["key"]
    seq_col, time_col, key_col = st.columns(3)
    seq_col.metric("Signed head", f"entry {head['seq']:,}" if head else "none yet")
    time_col.metric("Signed at (UTC)", ui.when(head["time"]) if head else "-")
    key_col.metric("Key fingerprint", key["fingerprint"][:16], help=f"SHA-256 of the Ed25519 public key: "
                   f"{key['fingerprint']}")
    if head:
        st.download_button("Download head", json.dumps(answer, indent=2), file_name=f"audit-head-{head['seq']}.json",
                           mime="application/json")


st.title("Audit log")
st.caption("Every act people took through Flight Recorder (approvals, rollbacks, kill switches, tokens, links), "
           "hash-chained and signed.")
with st.expander("What the check proves", icon=":material/help:"):
    st.markdown(PROVES)

st.subheader("Chain status")
show_verdict(ui.load(api.audit_verify))
show_head(ui.load(api.audit_head))

st.subheader("Entries, newest first")
everything = ui.load(api.audit_entries)
actor_col, act_col = st.columns(2)
actor = actor_col.selectbox("Actor", [ANYONE, *sorted({entry["actor"] for entry in everything})], key="audit_actor")
act = act_col.selectbox("Act", [ANY_ACT, *sorted({entry["act"] for entry in everything})], key="audit_act")
shown = everything if actor == ANYONE and act == ANY_ACT else ui.load(
    api.audit_entries, actor="" if actor == ANYONE else actor, act="" if act == ANY_ACT else act)
if not shown:
    st.info("No audit entries yet: acts such as pausing an agent or approving a rollback are recorded here.",
            icon=":material/info:")
else:
    st.caption(f"The newest {len(shown):,} entries{' matching the filters' if shown is not everything else ''}.")
    st.table(entry_rows(shown))

holds.show(ui.you_are())
