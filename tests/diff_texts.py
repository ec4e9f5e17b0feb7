"""German texts written for the diff tests: a fictitious story (a summit in Graz) and follow-ups."""

from __future__ import annotations

BASELINE = """Berger und Ostrow wollen sich in Graz treffen
Nordlands Präsidentin Anna Berger hat nach einem langen Telefonat mit Südlands Präsident Karl Ostrow ein Gipfeltreffen der beiden angekündigt.
Der Gipfel soll am 12. März in der österreichischen Stadt Graz stattfinden.
Ziel des Treffens sei ein Abkommen über die Nutzung des Grenzflusses Tarn, sagte Berger.
Vor dem Gipfel sollen die Außenminister beider Länder die Gespräche vorbereiten; die Delegation Nordlands leitet Außenminister Paul Weber.
Österreichs Kanzlerin Maria Huber erklärte, Österreich sei bereit, den Gipfel in Graz auszurichten.
Umweltverbände kritisieren das geplante Abkommen als Gefahr für die Fischbestände der Tarn.
"""

# Same facts, other words: no development.
RESTATEMENT_TITLE = "Gipfeltreffen in Graz: Berger will Ostrow im März treffen"
RESTATEMENT = """Nordlands Präsidentin Berger will Südlands Staatschef Ostrow im März in Graz treffen.
Das kündigte Berger nach einem Telefonat mit Ostrow an.
Bei dem Gipfel soll es um ein Abkommen über den Grenzfluss Tarn gehen.
Die Gespräche der Außenminister bereitet auf Seiten Nordlands Außenminister Weber vor.
Österreich ist nach den Worten von Kanzlerin Huber bereit, den Gipfel auszurichten.
"""

# A new fact: the summit is cancelled.
CANCELLATION_TITLE = "Gipfel in Graz abgesagt"
CANCELLATION = """Der für den 12. März geplante Gipfel von Berger und Ostrow in Graz ist abgesagt.
Südlands Regierungssprecher Igor Malenko teilte mit, Ostrow sehe derzeit keine Grundlage für ein Abkommen über die Tarn.
Zuvor waren die Vorbereitungsgespräche der Außenminister in Wien ohne Ergebnis abgebrochen worden.
Nordlands Präsidentin Berger zeigte sich enttäuscht und warf Südland Wortbruch vor.
"""

# The same development from another outlet (a paraphrasing wire copy).
CANCELLATION_COPY_TITLE = "Treffen von Berger und Ostrow geplatzt"
CANCELLATION_COPY = """Das Gipfeltreffen von Berger und Ostrow in Graz ist abgesagt.
Wie Regierungssprecher Igor Malenko mitteilte, sieht Ostrow keine Grundlage für ein Abkommen über die Tarn.
Die Vorbereitungsgespräche der Außenminister in Wien waren zuvor ohne Ergebnis abgebrochen worden.
Berger warf Südland Wortbruch vor.
"""

# One genuinely new fact on top of the known cancellation: sanctions.
SANCTIONS_TITLE = "Nordland verhängt Sanktionen gegen Südland"
SANCTIONS = """Nach der Absage des Gipfels in Graz hat Nordland Sanktionen gegen Südlands staatliche Wasserwerke verhängt.
Die Regierung in Nordstadt fror Konten der Betreiberfirma Tarnwerk im Wert von 300 Millionen Euro ein.
Präsidentin Berger sagte, die Strafmaßnahmen blieben in Kraft, bis Südland an den Verhandlungstisch zurückkehre.
"""

# An update of the restatement item: only the headline was corrected.
RESTATEMENT_TITLE_FIXED = "Gipfeltreffen in Graz: Berger will Ostrow am 12. März treffen"

# An update of the restatement item that adds a paragraph with a new fact.
RESTATEMENT_UPDATED = (
    RESTATEMENT
    + "Am Abend wurde bekannt, dass der Gipfel auf den 30. April verschoben wird, weil Ostrow an einer Lungenentzündung erkrankt ist.\n"
)

STORY = {
    "id": "graz-gipfel",
    "title": "Gipfel von Berger und Ostrow in Graz",
    "baseline": {"text": BASELINE},
    "keywords": ["Graz", "Ostrow", "Tarn"],
}

# A cancellation that is news by its change of state alone (no new noun or name).
BARE_CANCELLATION_TITLE = "Berger sagt Gipfel mit Ostrow ab"
BARE_CANCELLATION = "Präsidentin Berger hat das geplante Treffen mit Präsident Ostrow in Graz abgesagt."

# The known cancellation recapped, with a new fact of its own (troops moved: a number, a name).
RECAP_WITH_NEWS_TITLE = "Nach Gipfel-Absage: Südland verlegt Truppen an die Tarn"
RECAP_WITH_NEWS = """Nach der Absage des Gipfels von Berger und Ostrow in Graz hat Südland 5000 Soldaten an die Grenze verlegt.
Verteidigungsminister Boris Lenkow kündigte für Donnerstag ein Manöver am Ufer der Tarn an.
"""

# The same cancellation by roles instead of names, sharing few nouns with the first report.
CANCELLATION_BY_ROLES_TITLE = "Kein Treffen in Österreich"
CANCELLATION_BY_ROLES = """Südlands Staatschef lässt das Treffen mit Nordlands Präsidentin platzen.
Eine Begegnung der beiden sei vorerst nicht geplant, hieß es in der Hauptstadt.
"""

# The same cancellation in other words, with a fact of its own that carries no cue, name or number.
CANCELLATION_WITH_DISMISSAL_TITLE = "Nach geplatztem Gipfel: Berger entlässt Außenminister"
CANCELLATION_WITH_DISMISSAL = """Das Treffen von Berger und Ostrow in Graz ist geplatzt.
Berger entließ daraufhin ihren Außenminister und ernannte den Botschafter in Wien zum Nachfolger.
"""
