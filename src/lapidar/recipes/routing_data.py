"""The quickstart's data set: Harbor Mutual claim notes routed to the team that handles them.

Each row is a claim as a customer or an agent would write it (a phone note, an email, a web form) and the answer
is one team name: auto, home, health, travel or liability. A randomly initialised model can learn this from a few
hundred rows — which words point to which team — so the quickstart can show a held-out score that rises, where
free-text answers about the policy would need a model that already knows English.

The rows are generated from templates with a fixed seed, so the shipped files can be checked and rebuilt:
`python -m lapidar.recipes.routing_data` rewrites them, and the unit tests check they equal `build()`.
Held-out rows pair an incident with a phrasing that no training row uses for it: every incident and every
phrasing appears in training, but no held-out sentence does.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

__all__ = ["SYSTEM", "TEAMS", "build", "main", "write"]

SYSTEM = "You route Harbor Mutual claims to a team: auto, home, health, travel or liability."

# Incidents per team, as the customer would say them (first person). Slots in braces are filled per row.
INCIDENTS: dict[str, list[str]] = {
    "auto": [
        "my {vehicle} was rear-ended at a red light",
        "someone backed into my parked {vehicle} at the supermarket",
        "a stone cracked the windscreen of my {vehicle} on the motorway",
        "my {vehicle} was stolen from the driveway overnight",
        "I hit a deer on a country road and the bumper of my {vehicle} came off",
        "a driver sideswiped my {vehicle} while I was changing lanes",
        "the tyres of my {vehicle} were slashed in a parking garage",
        "I reversed my {vehicle} into a bollard and crushed the tailgate",
        "the airbags went off when my {vehicle} collided with a van at a junction",
        "my {vehicle} skidded on black ice and hit a lamppost",
        "a bus clipped the wing mirror of my {vehicle}",
        "the engine of my {vehicle} caught fire on the ring road",
    ],
    "home": [
        "a pipe burst in the {room} and soaked the ceiling",
        "a kitchen fire damaged the cabinets and the stove",
        "burglars broke into the house and took our TV and jewellery",
        "a storm tore tiles off the roof above the {room}",
        "a tree fell on our garage during high winds",
        "the basement flooded when the sump pump failed",
        "lightning struck the house and fried the wiring in the {room}",
        "the water heater leaked and ruined the floor of the {room}",
        "smoke from a chimney fire stained the walls of the {room}",
        "our fence and garden shed were flattened by a fallen oak",
        "someone smashed a window of the {room} and stole two laptops",
        "frozen pipes split under the floor of the {room}",
    ],
    "health": [
        "I broke my {body} skiing and needed surgery",
        "my daughter was admitted to hospital with pneumonia",
        "I need the cost of an MRI scan of my {body} reimbursed",
        "my husband had an emergency appendix operation",
        "the dentist pulled two teeth after an abscess",
        "my doctor prescribed physiotherapy for my {body}",
        "our son needed stitches in his {body} at the urgent care clinic",
        "I spent three nights on the cardiology ward after chest pains",
        "I was treated in the emergency department for a severe allergic reaction",
        "my mother had cataract surgery and the hospital bill has arrived",
        "an ambulance took me to hospital after I fainted",
        "I sprained my {body} and the clinic took X-rays",
    ],
    "travel": [
        "our flight to {city} was cancelled and we lost the hotel booking",
        "the airline lost my suitcase on the way to {city}",
        "I missed my connecting flight to {city} because of a strike",
        "my passport and wallet were stolen at a hostel in {city}",
        "the tour operator went bankrupt a week before our trip to {city}",
        "my luggage reached {city} three days after I did",
        "an ash cloud grounded our return flight from {city}",
        "the holiday flat we booked in {city} did not exist when we arrived",
        "a rail strike left us stranded in {city} for two nights",
        "we cancelled our ski holiday near {city} because of an avalanche warning",
        "my bag was crushed on the ferry to {city}",
        "our cruise skipped {city} and we lost the excursions we had prepaid",
    ],
    "liability": [
        "our dog bit a neighbour's child in the park",
        "a delivery driver slipped on our icy steps and is suing us",
        "my son's football went through the neighbour's window",
        "water from our bath leaked through and damaged the flat below",
        "a guest tripped over a rug at our party and wants compensation",
        "I knocked over a vase in a shop and they want me to pay for it",
        "our ladder fell over and dented the neighbour's conservatory",
        "the neighbours say the roots of our tree cracked their foundations",
        "a visitor's coat was ruined by wet paint in our hallway and she is claiming",
        "a child fell off our trampoline and the parents are claiming damages",
        "my daughter broke a borrowed camera that belongs to her friend's family",
        "our builder says I am responsible for the scaffolding that hit a passer-by",
    ],
}

SLOTS: dict[str, list[str]] = {
    "vehicle": ["car", "van", "SUV", "hatchback", "pickup", "motorbike", "estate car", "company car"],
    "room": ["bathroom", "kitchen", "loft", "hallway", "bedroom", "living room", "utility room", "study"],
    "body": ["wrist", "ankle", "knee", "shoulder", "arm", "elbow", "back", "collarbone"],
    "city": ["Lisbon", "Tokyo", "Rome", "Cancun", "Oslo", "Nairobi", "Lima", "Vienna", "Hanoi", "Montreal"],
}

# How the claim arrives. {incident} is first person ("my car was ..."); {Incident} is the same, capitalised.
PHRASINGS: list[str] = [
    "{Incident}. Which team handles this?",
    "New claim from {name}: {incident}.",
    'Phone note, {date}: "{Incident}."',
    "Hi, {incident} on {date}. Who do I talk to?",
    "Claim form: {incident}. Estimated cost ${amount}.",
    "{Incident} - please route.",
    'Web form: "{Incident}."',
    "Email from {name}: {incident}, and I would like to know what happens next.",
    "{name} called on {date}: {incident}.",
    "Route this one: {incident} (reported {date}).",
    "Good morning. {Incident}. What do I do now?",
    "Agent note: policyholder {name} says {incident}.",
]

NAMES = ["Ana Silva", "Tom Becker", "Priya Nair", "Kwame Mensah", "Li Wei", "Sofia Rossi", "Omar Haddad",
         "Emma Clarke", "Mateo Garcia", "Yuki Tanaka", "Grace Okafor", "Lars Nilsson", "Fatima Zahra",
         "Daniel Novak", "Chloe Martin", "Ravi Patel"]  # fmt: skip
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]  # fmt: skip

TEAMS = list(INCIDENTS)
SEED = 20261202
HELD_OUT_PER_TEAM = 12  # 60 held-out rows
TRAIN_PER_TEAM = 80  # 400 training rows (of the 12 x 12 - 12 = 132 unused pairs per team)
FILES = ("claims_routing_train.jsonl", "claims_routing_validation.jsonl")


def _fill(template: str, rng: random.Random) -> str:
    """Fill every slot of an incident (vehicle, room, body part, city) with a random choice."""
    for slot, choices in SLOTS.items():
        while "{" + slot + "}" in template:
            template = template.replace("{" + slot + "}", rng.choice(choices), 1)
    return template


def _claim(incident: str, phrasing: str, rng: random.Random) -> str:
    incident = _fill(incident, rng)
    return phrasing.format(
        incident=incident,
        Incident=incident[0].upper() + incident[1:],
        name=rng.choice(NAMES),
        date=f"{rng.randint(1, 28)} {rng.choice(MONTHS)}",
        amount=f"{rng.randrange(200, 20000, 100):,}",
    )


def _row(claim: str, team: str) -> dict:
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": claim},
            {"role": "assistant", "content": team},
        ]
    }


def build(seed: int = SEED) -> tuple[list[dict], list[dict]]:
    """The (train, held-out) rows. Per team, (incident, phrasing) pairs are drawn without replacement: the
    held-out pairs first, so no training row tells an incident the way a held-out row does."""
    rng = random.Random(seed)
    train: list[dict] = []
    held_out: list[dict] = []
    for team, incidents in INCIDENTS.items():
        pairs = [(i, p) for i in range(len(incidents)) for p in range(len(PHRASINGS))]
        rng.shuffle(pairs)
        # Every incident once in the held-out set (12 incidents, 12 rows), each with a phrasing of its own.
        by_incident: dict[int, tuple[int, int]] = {}
        for i, p in pairs:
            by_incident.setdefault(i, (i, p))
        held = sorted(by_incident.values())[:HELD_OUT_PER_TEAM]
        rest = [pair for pair in pairs if pair not in held]
        held_out += [_row(_claim(incidents[i], PHRASINGS[p], rng), team) for i, p in held]
        train += [_row(_claim(incidents[i], PHRASINGS[p], rng), team) for i, p in rest[:TRAIN_PER_TEAM]]
    rng.shuffle(train)
    rng.shuffle(held_out)
    return train, held_out


def write(directory: Path, seed: int = SEED) -> tuple[Path, Path]:
    """Write the two JSONL files into `directory`; returns their paths."""
    paths = (directory / FILES[0], directory / FILES[1])
    for path, rows in zip(paths, build(seed), strict=True):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return paths


def main() -> None:
    """Rewrite the shipped files in lapidar/resources (run after changing the templates)."""
    target = Path(__file__).resolve().parents[1] / "resources"
    for path in write(target):
        print(path, file=sys.stderr)


if __name__ == "__main__":
    main()
