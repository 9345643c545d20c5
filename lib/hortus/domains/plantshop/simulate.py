"""Simulate the plant shop's landing export: catalogue, users, events and reviews.

The export is deterministic: the same `SimConfig` gives byte-identical files and
manifest.  Every day draws from its own random streams (`default_rng([seed,
stream, day])`), so a longer window leaves the earlier days unchanged, and drift
and faults draw from streams of their own, so a drifted or faulty export equals
the clean one before `drift_start` (apart from the faulty lines).

Landing layout under `out_dir` (the documented export format):

- `plants/plants-YYYY-MM-DD.csv`      full catalogue snapshot at the start; on the
                                      price_change drift day, the changed rows only
- `users/users-YYYY-MM-DD.csv`        users who signed up that day (start: initial population)
- `events/events-YYYY-MM-DD.jsonl.gz` behaviour events, gzip JSON lines
- `reviews/reviews-YYYY-MM-DD.jsonl`  product reviews, plain JSON lines (only days with reviews)
- `_manifest.json`                    config, files (rows, bytes, sha256), injected faults,
                                      drift details, personal data planted in reviews, totals

Users carry a latent taste (category preferences, price sensitivity, pets, home
light) that depends on region and age; clicks, views, add-to-cart, orders and
ratings depend on it, so a recommender trained on the export finds real signal.
Closed loop: `simulate_more(served=...)` shows buyers what a model served (`_closed_loop`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from hortus.domains.plantshop._closed_loop import Served, apply_served
from hortus.domains.plantshop._closed_loop import served_recommendations as served_recommendations
from hortus.domains.plantshop.drift_changes import DRIFT_CHANGES, SEASONAL, changed_columns

__all__ = ["DRIFTS", "DRIFT_CHANGES", "FAULTS", "SimConfig", "simulate", "simulate_more"]

FAULTS: tuple[str, ...] = ("malformed", "duplicates", "late", "wrong_type", "future",
                           "missing_field", "changed_column", "non_utf8", "empty_file",
                           "truncated_gzip")  # fmt: skip
# the manifest of a drifted export lists the source columns each scenario changes
DRIFTS: tuple[str, ...] = tuple(DRIFT_CHANGES)  # new_region, price_change, seasonal

SHOP_OPENED = date(2025, 1, 1)
MANIFEST = "_manifest.json"
FORMAT_VERSION = 1
GZIP_LEVEL = 6
MAX_USERS = 999_999
MAX_PLANTS = 9_999

CATEGORIES = ("foliage", "succulent", "cactus", "flowering", "herb", "fern", "palm", "tree")
_FLOWERING, _HERB = CATEGORIES.index("flowering"), CATEGORIES.index("herb")
LIGHTS = ("low", "medium", "bright")
CARE_LEVELS = ("easy", "moderate", "expert")
DEVICES = ("desktop", "mobile", "tablet")
EVENT_TYPES = ("session_start", "rec_impression", "rec_click", "view", "add_to_cart", "order")
COUNTRIES = ("GB", "IE", "DE", "AT", "CH", "NL", "BE", "FR", "SE", "NO", "DK")
REGIONS = ("UKI", "DACH", "BENELUX", "FRANCE", "NORDICS")
_REGION_OF_COUNTRY = np.array([0, 0, 1, 1, 1, 2, 2, 3, 4, 4, 4])
_BASE_COUNTRY_P = np.array([0.22, 0.04, 0.25, 0.05, 0.05, 0.10, 0.06, 0.23, 0.0, 0.0, 0.0])
_NORDIC_COUNTRY_P = np.array([0.0] * 8 + [0.45, 0.25, 0.30])

# event type codes
_START, _IMP, _CLICK, _VIEW, _ATC, _ORDER = range(6)

# random stream ids (np.random.default_rng([seed, stream, day]))
_S_CATALOGUE, _S_PRICE, _S_USERS0, _S_SIGNUP, _S_NORDIC = 1, 2, 3, 4, 5
_S_SESSIONS, _S_REVIEW_PLAN, _S_REVIEWS, _S_FAULTS = 6, 7, 8, 9

_US_PER_DAY = 86_400_000_000
_US_PER_S = 1_000_000
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.6fZ"

# ------------------------------------------------------------------ behaviour parameters

_SESSIONS_PER_USER_DAY = 0.30
_SIGNUPS_PER_DAY = 0.010  # share of the initial user count
_NORDIC_SIGNUPS_PER_DAY = 0.012
_WEEKDAY = np.array([0.92, 0.90, 0.92, 0.96, 1.00, 1.25, 1.30])  # Mon..Sun
_WEEKDAY = _WEEKDAY / _WEEKDAY.mean()
_HOUR_W = np.array(
    [0.4, 0.25, 0.15, 0.1, 0.1, 0.2, 0.5, 1.0, 1.4, 1.5, 1.5, 1.6,
     1.9, 1.8, 1.5, 1.4, 1.5, 1.8, 2.3, 2.7, 2.8, 2.4, 1.6, 0.9]
)  # fmt: skip
_HOUR_P = _HOUR_W / _HOUR_W.sum()
_CATEGORY_P = np.array([0.22, 0.14, 0.10, 0.16, 0.10, 0.09, 0.09, 0.10])
_CATEGORY_PRICE = np.array([24.0, 9.0, 11.0, 19.0, 6.0, 16.0, 38.0, 55.0])
_LIGHT_P = np.array(
    [[0.30, 0.50, 0.20], [0.0, 0.20, 0.80], [0.0, 0.10, 0.90], [0.10, 0.50, 0.40],
     [0.0, 0.30, 0.70], [0.50, 0.40, 0.10], [0.20, 0.50, 0.30], [0.10, 0.40, 0.50]]
)  # fmt: skip
_CARE_P = np.array(
    [[0.45, 0.40, 0.15], [0.75, 0.20, 0.05], [0.70, 0.25, 0.05], [0.30, 0.45, 0.25],
     [0.50, 0.40, 0.10], [0.25, 0.50, 0.25], [0.40, 0.45, 0.15], [0.30, 0.50, 0.20]]
)  # fmt: skip
_PET_SAFE_P = np.array([0.25, 0.55, 0.70, 0.45, 0.90, 0.85, 0.90, 0.30])
# taste offsets per region (UKI, DACH, BENELUX, FRANCE, NORDICS) x category
_REGION_TASTE = np.array(
    [[0.0, 0.0, -0.1, 0.3, 0.2, 0.1, 0.0, 0.0],
     [0.2, 0.0, 0.0, 0.0, 0.0, 0.0, -0.1, 0.2],
     [0.2, -0.1, -0.2, 0.4, 0.0, 0.1, 0.0, 0.0],
     [0.0, 0.0, 0.0, 0.2, 0.4, -0.1, 0.1, 0.1],
     [-0.3, 1.0, 1.0, -0.2, 0.0, 0.0, -0.6, -0.3]]
)  # fmt: skip
# per (age - 45) / 15: the young prefer foliage, succulents and cacti, the old flowers and herbs
_AGE_TASTE = np.array([-0.30, -0.30, -0.30, 0.35, 0.25, 0.0, -0.1, 0.2])
_CATEGORY_APPEAL = np.array([0.4, 0.0, -0.1, 0.1, 0.0, 0.0, 0.2, 0.3])  # shop-wide taste
_PRICE_WEIGHT = 0.6
_REGION_PRICE_SENS = np.array([1.0, 0.9, 1.1, 1.0, 0.85])
# light penalty: rows = user's home light, columns = plant's light need
_LIGHT_PENALTY = np.array([[0.0, -0.4, -1.2], [0.0, 0.0, -0.5], [-0.2, 0.0, 0.0]])
_PET_PENALTY = -2.5
_REF_PRICE = 15.0
_PRICE_RISE = (1.25, 1.40)  # price_change: a factor per changed plant, in the manifest
_MAX_REC, _MAX_BROWSE = 10, 6
_CLICK_BIAS, _CLICK_SLOPE = -2.2, 0.9
_ATC_BIAS, _ATC_SLOPE = -4.1, 1.0
_CONVERT_P = 0.60
_KEEP_LINE_P = 0.85
_REVIEW_P = 0.30
_PII_REVIEW_P = 0.10
_FINANCIAL_REVIEW_P = 0.01

# ------------------------------------------------------------------ built-in word lists


def _words(text: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in text.split("|"))


_FIRST_NAMES = {
    "GB": _words("Oliver|George|Harry|Jack|Charlie|Thomas|James|William|Amelia|Olivia|Emily|Isla|"
                 "Ava|Jessica|Poppy|Sophie|Grace|Daniel|Chloe|Ruby|Samuel|Lucy|Eleanor|Henry"),
    "IE": _words("Sean|Conor|Liam|Cian|Oisin|Darragh|Niamh|Aoife|Ciara|Saoirse|Siobhan|Roisin|"
                 "Patrick|Eoin|Sinead|Grainne|Fiona|Declan|Aisling|Ronan"),
    "DE": _words("Lukas|Leon|Jonas|Felix|Maximilian|Paul|Jörg|Stefan|Anna|Lea|Lena|Hannah|Marie|"
                 "Sophie|Katharina|Julia|Jürgen|Sabine|Ursula|Tobias|Niklas|Johanna|Greta|Moritz"),
    "AT": _words("Florian|Lukas|David|Tobias|Matthias|Andreas|Anna|Lena|Sarah|Katharina|Magdalena|"
                 "Theresa|Sebastian|Elisabeth|Johanna|Valentina|Stefan|Christoph"),
    "CH": _words("Noah|Luca|Leon|Levin|Nico|Jonas|Mia|Lea|Lara|Laura|Elena|Nina|Reto|Urs|Beat|"
                 "Corinne|Andrea|Matthias|Sandra|Fabienne"),
    "NL": _words("Daan|Sem|Lucas|Bram|Thijs|Jesse|Sanne|Fleur|Emma|Julia|Lotte|Anouk|Femke|Maarten|"
                 "Joost|Pieter|Sophie|Eva|Ruben|Noor"),
    "BE": _words("Arthur|Louis|Lucas|Noah|Jules|Victor|Olivia|Emma|Louise|Elise|Marie|Lien|"
                 "Wouter|Pieter|Sofie|Hélène|Mathilde|Thibault|Kobe|Anaïs"),
    "FR": _words("Gabriel|Louis|Raphaël|Jules|Hugo|Léo|Lucas|Arthur|Emma|Jade|Louise|Alice|Chloé|"
                 "Léa|Manon|Camille|Inès|François|Élodie|Mathieu|Céline|Nicolas|Aurélie|Julien"),
    "SE": _words("Erik|Lars|Johan|Nils|Oskar|Axel|Anna|Maja|Karin|Astrid|Elsa|Linnea|Ingrid|Sven|"
                 "Björn|Freja|Ebba|Gustav|Sofia|Klara"),
    "NO": _words("Ole|Magnus|Henrik|Jonas|Eirik|Håkon|Kari|Ingrid|Sigrid|Nora|Solveig|Silje|Emma|"
                 "Jakob|Tor|Ragnhild|Marit|Aksel|Ida|Sander"),
    "DK": _words("Mads|Søren|Rasmus|Anders|Jesper|Mikkel|Frederik|Freja|Mette|Ida|Camilla|Louise|"
                 "Sofie|Signe|Line|Jens|Karen|Emil|Astrid|Magnus"),
}  # fmt: skip
_LAST_NAMES = {
    "GB": _words("Smith|Jones|Taylor|Brown|Williams|Wilson|Johnson|Davies|Robinson|Wright|Thompson|"
                 "Evans|Walker|White|Roberts|Green|Hall|Wood|Jackson|Clarke|Hughes|Edwards"),
    "IE": _words("Murphy|Kelly|O'Sullivan|Walsh|Smith|O'Brien|Byrne|Ryan|O'Connor|O'Neill|"
                 "O'Reilly|Doyle|McCarthy|Gallagher|Doherty|Kennedy|Lynch|Murray|Quinn|Moore"),
    "DE": _words("Müller|Schmidt|Schneider|Fischer|Weber|Meyer|Wagner|Becker|Schulz|Hoffmann|"
                 "Schäfer|Koch|Bauer|Richter|Klein|Wolf|Schröder|Neumann|Schwarz|Zimmermann|"
                 "Braun|Krüger"),
    "AT": _words("Gruber|Huber|Bauer|Wagner|Müller|Pichler|Steiner|Moser|Mayer|Hofer|Leitner|"
                 "Berger|"
                 "Fuchs|Eder|Fischer|Schmid|Winkler|Weber|Schwarz|Maier"),
    "CH": _words("Müller|Meier|Schmid|Keller|Weber|Huber|Schneider|Meyer|Steiner|Fischer|Gerber|"
                 "Brunner|Baumann|Frei|Zimmermann|Moser|Widmer|Wyss|Graf|Roth"),
    "NL": _words("de Jong|Jansen|de Vries|van den Berg|van Dijk|Bakker|Janssen|Visser|Smit|Meijer|"
                 "de Boer|Mulder|de Groot|Bos|Vos|Peters|Hendriks|van Leeuwen|Dekker|Brouwer"),
    "BE": _words("Peeters|Janssens|Maes|Jacobs|Mertens|Willems|Claes|Goossens|Wouters|De Smet|"
                 "Dubois|Lambert|Dupont|Martin|Simon|Leclercq|Laurent|Renard|Vermeulen|Hermans"),
    "FR": _words("Martin|Bernard|Dubois|Thomas|Robert|Richard|Petit|Durand|Leroy|Moreau|Simon|"
                 "Laurent|Lefèvre|Michel|Garcia|David|Bertrand|Roux|Vincent|Fournier|Morel|"
                 "Girard"),
    "SE": _words("Andersson|Johansson|Karlsson|Nilsson|Eriksson|Larsson|Olsson|Persson|Svensson|"
                 "Gustafsson|Pettersson|Jonsson|Lindqvist|Lindberg|Berg|Lund|Holm|Sjöberg"),
    "NO": _words("Hansen|Johansen|Olsen|Larsen|Andersen|Pedersen|Nilsen|Kristiansen|Jensen|Karlsen|"
                 "Johnsen|Pettersen|Eriksen|Berg|Haugen|Hagen|Dahl|Bakken|Lie|Solberg"),
    "DK": _words("Nielsen|Jensen|Hansen|Pedersen|Andersen|Christensen|Larsen|Sørensen|Rasmussen|"
                 "Jørgensen|Petersen|Madsen|Kristensen|Olsen|Thomsen|Poulsen|Johansen|Møller"),
}  # fmt: skip
_STREETS = {
    "GB": _words("High Street|Station Road|Church Lane|Victoria Road|Park Avenue|Mill Lane|"
                 "Queen Street|King's Road|Green Lane|Manor Road|Orchard Close|The Crescent"),
    "IE": _words("Main Street|Church Road|Patrick Street|Strand Road|Abbey Street|Castle Street|"
                 "Bridge Street|Parnell Street|Greenfield Park|Seafield Road"),
    "DE": _words("Hauptstraße|Bahnhofstraße|Gartenstraße|Schulstraße|Lindenallee|Bergstraße|"
                 "Kirchweg|Rosenweg|Goethestraße|Schillerstraße|Ahornweg|Am Markt"),
    "AT": _words("Hauptplatz|Mariahilfer Straße|Landstraße|Kirchengasse|Schulgasse|Lindengasse|"
                 "Bahnhofstraße|Wiener Straße|Grazer Straße|Feldgasse"),
    "CH": _words("Bahnhofstrasse|Dorfstrasse|Seestrasse|Kirchgasse|Hauptstrasse|Bergstrasse|"
                 "Schulhausstrasse|Rosenweg|Gartenstrasse|Industriestrasse"),
    "NL": _words("Kerkstraat|Dorpsstraat|Molenweg|Stationsweg|Prinsengracht|Wilhelminastraat|"
                 "Julianalaan|Beukenlaan|Schoolstraat|Marktplein"),
    "BE": _words("Kerkstraat|Stationsstraat|Rue de la Station|Rue du Marché|Grote Markt|"
                 "Avenue Louise|Nieuwstraat|Rue de l'Église|Dorpsstraat|Rue des Champs"),
    "FR": _words("rue de la Paix|avenue Victor Hugo|rue de la République|boulevard Voltaire|"
                 "rue des Lilas|place de l'Église|rue Pasteur|allée des Roses|rue du Moulin|"
                 "chemin des Vignes"),
    "SE": _words("Storgatan|Drottninggatan|Kungsgatan|Skolgatan|Södra vägen|Björkvägen|Parkvägen|"
                 "Kyrkogatan|Ringvägen|Tallvägen"),
    "NO": _words("Storgata|Kirkeveien|Skolegata|Parkveien|Bjørkeveien|Strandgata|Kongens gate|"
                 "Granveien|Solbakken|Torggata"),
    "DK": _words("Vestergade|Østergade|Nørregade|Søndergade|Strandvejen|Skolevej|Kirkevej|"
                 "Bøgevej|Møllevej|Havnegade"),
}  # fmt: skip
# (city, postcode template): '#' = digit, '@' = capital letter
_CITIES = {
    "GB": (("London", "SW# #@@"), ("London", "N## #@@"), ("Manchester", "M## #@@"),
           ("Bristol", "BS# #@@"), ("Leeds", "LS# #@@"), ("Edinburgh", "EH# #@@"),
           ("Glasgow", "G## #@@"), ("Birmingham", "B## #@@"), ("Brighton", "BN# #@@"),
           ("Cardiff", "CF## #@@"), ("York", "YO## #@@"), ("Oxford", "OX# #@@")),
    "IE": (("Dublin", "D0# @###"), ("Cork", "T12 @###"), ("Galway", "H91 @###"),
           ("Limerick", "V94 @###"), ("Waterford", "X91 @###")),
    "DE": (("Berlin", "10###"), ("Hamburg", "20###"), ("München", "80###"), ("Köln", "50###"),
           ("Frankfurt am Main", "60###"), ("Leipzig", "04###"), ("Stuttgart", "70###"),
           ("Dresden", "01###"), ("Bremen", "28###"), ("Hannover", "30###")),
    "AT": (("Wien", "1###"), ("Graz", "80##"), ("Linz", "40##"), ("Salzburg", "50##"),
           ("Innsbruck", "60##")),
    "CH": (("Zürich", "80##"), ("Bern", "30##"), ("Basel", "40##"), ("Luzern", "60##"),
           ("St. Gallen", "90##"), ("Winterthur", "84##")),
    "NL": (("Amsterdam", "10## @@"), ("Rotterdam", "30## @@"), ("Utrecht", "35## @@"),
           ("Den Haag", "25## @@"), ("Eindhoven", "56## @@"), ("Groningen", "97## @@"),
           ("Haarlem", "20## @@")),
    "BE": (("Bruxelles", "10##"), ("Antwerpen", "20##"), ("Gent", "90##"), ("Liège", "40##"),
           ("Brugge", "80##"), ("Leuven", "30##")),
    "FR": (("Paris", "750##"), ("Lyon", "6900#"), ("Marseille", "130##"), ("Toulouse", "310##"),
           ("Nantes", "440##"), ("Bordeaux", "330##"), ("Lille", "590##"),
           ("Strasbourg", "670##")),
    "SE": (("Stockholm", "1## ##"), ("Göteborg", "4## ##"), ("Malmö", "2## ##"),
           ("Uppsala", "75# ##")),
    "NO": (("Oslo", "0###"), ("Bergen", "5###"), ("Trondheim", "7###"), ("Stavanger", "40##")),
    "DK": (("København", "1###"), ("Aarhus", "8###"), ("Odense", "5###"), ("Aalborg", "9###")),
}  # fmt: skip
_ADDRESS_STYLE = {"GB": "uk", "IE": "uk", "FR": "fr"}  # others: "{street} {n}, {postcode} {city}"
_PHONES = {
    "GB": ("+44 7700 900###",),
    "IE": ("+353 8# ### ####",),
    "DE": ("+49 15# #######", "+49 17# ########"),
    "AT": ("+43 66# #######",),
    "CH": ("+41 7# ### ## ##",),
    "NL": ("+31 6 ########",),
    "BE": ("+32 47# ## ## ##",),
    "FR": ("+33 6 ## ## ## ##", "+33 7 ## ## ## ##"),
    "SE": ("+46 7# ### ## ##",),
    "NO": ("+47 4## ## ###", "+47 9## ## ###"),
    "DK": ("+45 2# ## ## ##", "+45 6# ## ## ##"),
}
_IP_FIRST_OCTET = {
    "GB": (81, 86, 90, 92), "IE": (78, 87, 89, 109), "DE": (77, 79, 84, 87, 91, 93),
    "AT": (77, 80, 83, 91), "CH": (77, 83, 85, 178), "NL": (77, 80, 83, 145),
    "BE": (81, 84, 91, 109), "FR": (78, 82, 86, 88, 90), "SE": (78, 81, 83, 90),
    "NO": (77, 84, 88, 109), "DK": (80, 87, 90, 188),
}  # fmt: skip
_EMAIL_DOMAINS = _words("example.com|example.org|example.net|mail.example.org|post.example.com|"
                        "web.example.net")  # fmt: skip
_ASCII_FOLD = {
    "ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "å": "aa", "ø": "oe", "æ": "ae", "é": "e",
    "è": "e", "ê": "e", "ë": "e", "ç": "c", "à": "a", "â": "a", "î": "i", "ï": "i", "ô": "o",
    "û": "u", "ù": "u", "ñ": "n", "ó": "o", "í": "i", "á": "a", "ú": "u",
}  # fmt: skip

# category -> "Species|Cultivar, Cultivar" entries ("" = the species itself)
_PLANTS = {
    "foliage": (
        "Monstera deliciosa|Thai Constellation, Albo Variegata, Aurea",
        "Philodendron hederaceum|Brasil, Micans, Lemon Lime",
        "Epipremnum aureum|Marble Queen, Neon, N'Joy, Golden",
        "Ficus elastica|Tineke, Burgundy, Ruby",
        "Ficus lyrata|Bambino",
        "Calathea orbifolia|",
        "Calathea makoyana|Medallion",
        "Zamioculcas zamiifolia|Raven, Zenzi",
        "Dracaena trifasciata|Laurentii, Moonshine, Black Gold",
        "Alocasia amazonica|Polly, Bambino",
        "Aglaonema commutatum|Silver Bay, Maria",
        "Pilea peperomioides|",
        "Peperomia obtusifolia|Variegata, Green Gold",
        "Maranta leuconeura|Fascinator, Lemon Lime",
        "Dieffenbachia seguine|Camille, Tropic Snow",
        "Syngonium podophyllum|Pink Allusion, White Butterfly",
        "Scindapsus pictus|Argyraeus, Exotica",
        "Hoya carnosa|Krimson Queen, Tricolor",
    ),
    "succulent": (
        "Echeveria|Perle von Nürnberg, Black Prince, Lola",
        "Crassula ovata|Gollum, Hobbit",
        "Aloe vera|",
        "Haworthiopsis attenuata|Super Zebra",
        "Sedum morganianum|Burrito",
        "Senecio rowleyanus|",
        "Kalanchoe tomentosa|Chocolate Soldier",
        "Graptopetalum paraguayense|",
        "Sempervivum tectorum|Red Beauty",
        "Gasteria carinata|",
        "Aeonium arboreum|Zwartkop",
        "Pachyphytum oviferum|",
    ),
    "cactus": (
        "Mammillaria elongata|Copper King",
        "Echinocactus grusonii|",
        "Opuntia microdasys|Albata",
        "Schlumbergera truncata|White Christmas, Gold Charm",
        "Cereus peruvianus|Monstrosus",
        "Gymnocalycium mihanovichii|Hibotan",
        "Astrophytum myriostigma|",
        "Rhipsalis baccifera|",
        "Espostoa lanata|",
        "Parodia magnifica|",
        "Epiphyllum anguliger|",
    ),
    "flowering": (
        "Phalaenopsis|White Wonder, Pink Lady, Golden Sun",
        "Anthurium andraeanum|Red Champion, Pink Champion, Sierra White",
        "Spathiphyllum wallisii|Sweet Chico, Bingo Cupido",
        "Saintpaulia ionantha|Blue Dragon",
        "Begonia rex|Escargot, Fireworks",
        "Kalanchoe blossfeldiana|Calandiva",
        "Guzmania lingulata|Tempo",
        "Hibiscus rosa-sinensis|Adonicus",
        "Streptocarpus|Blue Ice",
        "Cyclamen persicum|Halios",
        "Clivia miniata|",
        "Medinilla magnifica|",
        "Gardenia jasminoides|Kleim's Hardy",
    ),
    "herb": (
        "Ocimum basilicum|Genovese, Thai, Purple Ruffles",
        "Mentha spicata|Moroccan",
        "Salvia rosmarinus|Tuscan Blue",
        "Thymus vulgaris|Compactus",
        "Petroselinum crispum|Moss Curled",
        "Allium schoenoprasum|",
        "Coriandrum sativum|Calypso",
        "Origanum vulgare|Aureum",
        "Lavandula angustifolia|Hidcote, Munstead",
        "Melissa officinalis|",
    ),
    "fern": (
        "Nephrolepis exaltata|Bostoniensis, Green Lady",
        "Asplenium nidus|Crispy Wave",
        "Adiantum raddianum|Fragrans",
        "Platycerium bifurcatum|",
        "Davallia fejeensis|",
        "Pteris cretica|Albolineata",
        "Phlebodium aureum|Blue Star",
        "Microsorum musifolium|Crocodyllus",
        "Blechnum gibbum|Silver Lady",
    ),
    "palm": (
        "Dypsis lutescens|",
        "Howea forsteriana|",
        "Chamaedorea elegans|Bella",
        "Rhapis excelsa|",
        "Livistona rotundifolia|",
        "Phoenix roebelenii|",
        "Beaucarnea recurvata|",
        "Caryota mitis|",
        "Cycas revoluta|",
    ),
    "tree": (
        "Ficus benjamina|Danielle, Starlight",
        "Olea europaea|",
        "Citrus limon|Meyer",
        "Schefflera arboricola|Gold Capella, Nora",
        "Pachira aquatica|",
        "Dracaena marginata|Bicolor, Magenta",
        "Strelitzia nicolai|",
        "Yucca elephantipes|",
        "Polyscias fruticosa|",
        "Ficus microcarpa|Ginseng",
        "Laurus nobilis|",
        "Coffea arabica|",
    ),
}
_NAME_VARIANTS = ("", " (large)", " (mini)", " (XXL)", " (hanging)", " (gift set)")

# review templates: (before the plant name, after it) per rating 1..5
_REVIEW_OPENERS = {
    1: (("The ", " arrived half dead."), ("Very disappointed with the ", "."),
        ("My ", " died within two weeks."), ("The ", " was nothing like the photos.")),
    2: (("The ", " looked rather sad on arrival."), ("Not happy with my ", "."),
        ("The ", " lost most of its leaves."), ("Expected more from this ", ".")),
    3: (("The ", " is okay."), ("My ", " is doing fine, nothing special."),
        ("Decent ", ", a bit small."), ("The ", " needed some time to settle in.")),
    4: (("Nice ", ", very healthy."), ("Happy with my ", "."),
        ("The ", " arrived in good shape."), ("Good quality ", ", a few bent leaves.")),
    5: (("Absolutely love my ", "!"), ("Perfect ", ", arrived in great shape."),
        ("My ", " is thriving."), ("Gorgeous ", ", exactly as pictured.")),
}  # fmt: skip
_REVIEW_SECOND = {
    "neg": ("Several leaves were yellow on arrival.", "The soil was full of fungus gnats.",
            "Customer service did not reply.", "Not worth the price."),
    "mid": ("Delivery took a bit longer than expected.", "Smaller than I thought.",
            "Time will tell how it does.", "The pot was cracked, but the plant is fine."),
    "pos": ("Packaging was excellent.", "Delivery was quick.", "Would definitely order again.",
            "It has already put out a new leaf.", "Looks even better than in the photos."),
}  # fmt: skip


# ------------------------------------------------------------------ config


@dataclass(frozen=True)
class SimConfig:
    """Parameters of one simulated export (all of them recorded in the manifest)."""

    seed: int = 42
    start: str = "2025-03-01"
    days: int = 28
    users: int = 1500
    plants: int = 120
    drift: tuple[str, ...] = ()
    drift_start: str | None = None
    faults: tuple[str, ...] = ()
    fault_rate: float = 0.002
    #: first day (index into the window) whose files are written; the earlier days are
    #: generated (so users, orders and pending reviews carry over) but not written.
    #: `simulate_more` sets it to continue an existing export.
    first_day: int = 0

    def __post_init__(self) -> None:
        """Normalise lists to tuples and refuse invalid values with a clear message."""
        object.__setattr__(self, "drift", tuple(self.drift))
        object.__setattr__(self, "faults", tuple(self.faults))
        unknown = [f for f in self.faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; valid faults: {list(FAULTS)}")
        unknown = [d for d in self.drift if d not in DRIFTS]
        if unknown:
            raise ValueError(f"unknown drift(s) {unknown}; valid drifts: {list(DRIFTS)}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        start = _parse_date(self.start, "start")
        if start < SHOP_OPENED:
            raise ValueError(f"start {self.start} is before the shop opened ({SHOP_OPENED})")
        if self.days < 1:
            raise ValueError(f"days must be >= 1, got {self.days}")
        if not 1 <= self.users <= MAX_USERS // 4:
            raise ValueError(f"users must be between 1 and {MAX_USERS // 4}, got {self.users}")
        if not 1 <= self.plants <= MAX_PLANTS:
            raise ValueError(f"plants must be between 1 and {MAX_PLANTS}, got {self.plants}")
        if not 0 <= self.first_day < self.days:
            raise ValueError(f"first_day must be in [0, days), got {self.first_day}")
        if not 0.0 <= self.fault_rate <= 0.1:
            raise ValueError(f"fault_rate must be between 0 and 0.1, got {self.fault_rate}")
        if self.drift_start is not None:
            offset = (_parse_date(self.drift_start, "drift_start") - start).days
            if not 1 <= offset < self.days:
                raise ValueError(
                    f"drift_start {self.drift_start} must fall after start and inside the "
                    f"window {self.start} + {self.days} days"
                )
        elif self.drift and self.days < 2:
            raise ValueError("drift needs a window of at least 2 days")

    @property
    def start_date(self) -> date:
        """Return the first day of the window."""
        return date.fromisoformat(self.start)

    @property
    def drift_day(self) -> int | None:
        """Return the index of the first drifted day, or None without drift."""
        if not self.drift:
            return None
        if self.drift_start is not None:
            return (date.fromisoformat(self.drift_start) - self.start_date).days
        return self.days // 2


def _parse_date(value: str, what: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise ValueError(f"{what} must be a date YYYY-MM-DD, got {value!r}") from exc


# ------------------------------------------------------------------ small vectorised helpers


def _rng(seed: int, stream: int, day: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, stream, day])


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_MASK48 = np.uint64((1 << 48) - 1)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Return a bijective 64-bit mix of x (so distinct inputs give distinct outputs)."""
    x = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _mix48(x: np.ndarray) -> np.ndarray:
    """Return a bijective mix of the low 48 bits of x."""
    x = x.astype(np.uint64) & _MASK48
    x = x ^ (x >> np.uint64(24))
    x = (x * np.uint64(0x9E3779B97F4B)) & _MASK48
    x = x ^ (x >> np.uint64(21))
    x = (x * np.uint64(0xC2B2AE3D27D5)) & _MASK48
    return x ^ (x >> np.uint64(24))


def _seed_key(seed: int, salt: int) -> np.uint64:
    return _splitmix64(np.array([(seed * 1_000_003 + salt) % 2**64], dtype=np.uint64))[0]


def _hex(x: np.ndarray, width: int, prefix: str) -> pl.Series:
    """Return prefix + the low `width` hex digits of each uint64."""
    x = np.asarray(x, dtype=np.uint64)
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64) * np.uint64(4)
    codes = np.ascontiguousarray(_HEX[(x[:, None] >> shifts[None, :]) & np.uint64(15)])
    raw = pl.Series(codes.view(f"S{width}").reshape(-1), dtype=pl.Binary).cast(pl.String)
    return pl.select(pl.lit(prefix) + raw).to_series() if len(x) else raw


def _ids(numbers: np.ndarray, prefix: str, width: int) -> pl.Series:
    """Return ids like u000123 from integers."""
    s = pl.Series(np.asarray(numbers, dtype=np.int64)).cast(pl.String).str.zfill(width)
    return pl.select(pl.lit(prefix) + s).to_series()


def _fill_template(rng: np.random.Generator, template: str, n: int) -> np.ndarray:
    """Return n strings from a template: '#' becomes a random digit, '@' a capital letter."""
    t = np.frombuffer(template.encode("ascii"), dtype=np.uint8)
    out = np.tile(t, (n, 1))
    digits, letters = t == ord("#"), t == ord("@")
    out[:, digits] = rng.integers(48, 58, (n, int(digits.sum())), dtype=np.uint8)
    out[:, letters] = rng.integers(65, 91, (n, int(letters.sum())), dtype=np.uint8)
    return np.ascontiguousarray(out).view(f"S{len(t)}").reshape(-1).astype(str)


def _choose_str(rng: np.random.Generator, words: tuple[str, ...], n: int) -> np.ndarray:
    return np.array(words, dtype=object)[rng.integers(0, len(words), n)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _ip_strings(octets: np.ndarray) -> pl.Series:
    """Return dotted IPv4 strings from an (n, 4) array of octets."""
    df = pl.DataFrame({f"o{i}": octets[:, i].astype(np.int64) for i in range(4)})
    return df.select(pl.concat_str([pl.col(f"o{i}") for i in range(4)], separator=".")).to_series()


def _format_us(us: np.ndarray) -> pl.Series:
    return pl.from_epoch(pl.Series(np.asarray(us, dtype=np.int64)), time_unit="us").dt.strftime(
        _TS_FORMAT
    )


def _day_us(d: date) -> int:
    return (d - date(1970, 1, 1)).days * _US_PER_DAY


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="", compresslevel=GZIP_LEVEL) as g:
        g.write(data)
    return buf.getvalue()


def _jsonl(df: pl.DataFrame) -> pl.Series:
    """Return one compact JSON object text per row (keys in column order, nulls as null)."""
    return df.select(pl.struct(df.columns).struct.json_encode().alias("line")).to_series()


def _join_lines(lines: pl.Series) -> bytes:
    """Return the lines as UTF-8 bytes, each ended by a newline (JSON text holds no raw newline)."""
    buf = io.BytesIO()
    pl.DataFrame({"line": lines}).write_csv(buf, include_header=False, quote_style="never")
    return buf.getvalue()


# ------------------------------------------------------------------ catalogue


@dataclass
class _Catalogue:
    frame: pl.DataFrame  # the CSV snapshot at start
    category: np.ndarray
    price: np.ndarray
    light: np.ndarray
    pet_safe: np.ndarray
    in_stock: np.ndarray
    quality: np.ndarray
    name: np.ndarray


def _plant_names(rng: np.random.Generator, category: np.ndarray) -> np.ndarray:
    names = np.empty(len(category), dtype=object)
    for c, cat in enumerate(CATEGORIES):
        combos = []
        for entry in _PLANTS[cat]:
            species, cultivars = entry.split("|")
            combos += [species] + [f"{species} '{v.strip()}'" for v in cultivars.split(",") if v]
        idx = np.flatnonzero(category == c)
        base = np.array(combos, dtype=object)[rng.permutation(len(combos))]
        k = np.arange(len(idx))
        rounds = k // len(combos)
        variant = np.array(_NAME_VARIANTS, dtype=object)[rounds % len(_NAME_VARIANTS)]
        names[idx] = base[k % len(combos)] + variant
        deep = rounds >= len(_NAME_VARIANTS)
        names[idx[deep]] = names[idx[deep]] + np.char.mod(" #%d", rounds[deep]).astype(object)
    return names


def _catalogue(cfg: SimConfig) -> _Catalogue:
    rng = _rng(cfg.seed, _S_CATALOGUE)
    n = cfg.plants
    cat = rng.choice(len(CATEGORIES), n, p=_CATEGORY_P)
    raw = _CATEGORY_PRICE[cat] * rng.lognormal(0.0, 0.45, n)
    price = np.clip(np.maximum(np.round(raw), 3.0) - 0.01, 0.99, 349.99).round(2)
    light = (rng.random(n)[:, None] > np.cumsum(_LIGHT_P[cat], axis=1)).sum(axis=1)
    care = (rng.random(n)[:, None] > np.cumsum(_CARE_P[cat], axis=1)).sum(axis=1)
    light, care = np.minimum(light, 2), np.minimum(care, 2)
    pet_safe = rng.random(n) < _PET_SAFE_P[cat]
    stock = np.where(rng.random(n) < 0.05, 0, np.minimum(rng.lognormal(4.0, 1.0, n), 5000))
    stock = stock.astype(np.int64)
    quality = rng.normal(0.0, 0.4, n)
    names = _plant_names(rng, cat)
    opened_s = _day_us(SHOP_OPENED) // _US_PER_S
    span_s = (cfg.start_date - SHOP_OPENED).days * 86_400
    updated = opened_s + (rng.integers(0, span_s, n) if span_s else np.zeros(n, np.int64))
    frame = pl.DataFrame(
        {
            "plant_id": _ids(np.arange(1, n + 1), "p", 4),
            "name": pl.Series(names.astype(str), dtype=pl.String),
            "category": np.array(CATEGORIES)[cat],
            "price": price,
            "light": np.array(LIGHTS)[light],
            "care_level": np.array(CARE_LEVELS)[care],
            "pet_safe": pet_safe,
            "stock": stock,
            "updated_at": pl.from_epoch(pl.Series(updated), time_unit="s").dt.strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
        }
    )
    return _Catalogue(frame, cat, price, light, pet_safe, stock > 0, quality, names)


def _price_change(
    cfg: SimConfig, cat: _Catalogue, day: date
) -> tuple[pl.DataFrame, np.ndarray, dict]:
    """Raise prices of one or two categories (~30% of plants) by 25-40% from `day`.

    Return the new snapshot, the new price per plant and a summary for the manifest.
    """
    rng = _rng(cfg.seed, _S_PRICE)
    share = np.bincount(cat.category, minlength=len(CATEGORIES)) / len(cat.category)
    n_cat = len(CATEGORIES)
    options = [(c,) for c in range(n_cat)] + [
        (a, b) for a in range(n_cat) for b in range(a + 1, n_cat)
    ]
    dist = np.array([abs(share[list(o)].sum() - 0.30) for o in options])
    near = np.flatnonzero(dist <= max(0.06, dist.min()))
    chosen = list(options[int(near[rng.integers(0, len(near))])])
    changed = np.isin(cat.category, chosen)
    factor = rng.uniform(*_PRICE_RISE, len(changed))
    new_price = np.where(changed, np.clip(np.round(cat.price * factor, 2), 0.5, 499.99), cat.price)
    stamp = day.isoformat() + "T00:00:00Z"
    frame = cat.frame.with_columns(
        pl.Series("price", new_price),
        pl.when(pl.Series(changed)).then(pl.lit(stamp)).otherwise(pl.col("updated_at"))
        .alias("updated_at"),
    ).filter(pl.Series(changed))  # fmt: skip
    # the drift-day file is an incremental export: only the plants whose row changed, so
    # an unchanged plant never repeats its (plant_id, updated_at) key
    ratio = new_price[changed] / cat.price[changed]  # the magnitude, recorded
    info = {"categories": sorted(CATEGORIES[c] for c in chosen), "plants_total": len(changed),
            "plants_changed": int(changed.sum()), "price_factor_range": list(_PRICE_RISE),
            "mean_price_factor": round(float(ratio.mean()), 4) if ratio.size else None}  # fmt: skip
    return frame, new_price, info


# ------------------------------------------------------------------ users


@dataclass
class _Users:
    """Latent and personal attributes of users (arrays aligned by user index)."""

    signup_day: np.ndarray
    region: np.ndarray
    country: np.ndarray
    age: np.ndarray
    taste: np.ndarray  # (n, categories)
    price_sens: np.ndarray
    pets: np.ndarray
    home_light: np.ndarray
    activity: np.ndarray
    mobile: np.ndarray
    home_ip: np.ndarray  # (n, 4)
    pii: pl.DataFrame  # name, email, phone

    def extend(self, other: _Users) -> _Users:
        fields = {
            k: np.concatenate([getattr(self, k), getattr(other, k)])
            for k in self.__dataclass_fields__
            if k != "pii"
        }
        return _Users(**fields, pii=pl.concat([self.pii, other.pii]))

    def __len__(self) -> int:
        return len(self.signup_day)


def _personal_data(
    rng: np.random.Generator, country: np.ndarray, age: np.ndarray, ref: date
) -> tuple[pl.DataFrame, np.ndarray]:
    """Return the personal columns of new users and their home IP octets."""
    n = len(country)
    first, last, street, city = (np.empty(n, dtype=object) for _ in range(4))
    postcode, phone = np.empty(n, dtype=object), np.empty(n, dtype=object)
    style = np.empty(n, dtype=object)
    ip = np.empty((n, 4), dtype=np.int64)
    for c, code in enumerate(COUNTRIES):
        idx = np.flatnonzero(country == c)
        m = len(idx)
        if not m:
            continue
        first[idx] = _choose_str(rng, _FIRST_NAMES[code], m)
        last[idx] = _choose_str(rng, _LAST_NAMES[code], m)
        street[idx] = _choose_str(rng, _STREETS[code], m)
        which = rng.integers(0, len(_CITIES[code]), m)
        for k, (city_name, template) in enumerate(_CITIES[code]):
            sel = idx[which == k]
            city[sel] = city_name
            postcode[sel] = _fill_template(rng, template, len(sel))
        which = rng.integers(0, len(_PHONES[code]), m)
        for k, template in enumerate(_PHONES[code]):
            sel = idx[which == k]
            phone[sel] = _fill_template(rng, template, len(sel))
        style[idx] = _ADDRESS_STYLE.get(code, "eu")
        ip[idx, 0] = np.array(_IP_FIRST_OCTET[code])[rng.integers(0, 4, m)]
        ip[idx, 1:] = rng.integers(1, 255, (m, 3))
    number = rng.integers(1, 181, n)
    email_style = rng.integers(0, 4, n)
    email_num = rng.integers(1, 1000, n)
    domain = _choose_str(rng, _EMAIL_DOMAINS, n)
    birth = np.datetime64(ref) - np.round((age + rng.uniform(0.01, 0.99, n)) * 365.2425).astype(
        "timedelta64[D]"
    )
    null_phone, null_address, null_birth = (rng.random(n) < p for p in (0.06, 0.03, 0.02))
    df = pl.DataFrame(
        {
            "first": first.astype(str),
            "last": last.astype(str),
            "street": street.astype(str),
            "city": city.astype(str),
            "postcode": postcode.astype(str),
            "style": style.astype(str),
            "number": number,
            "email_style": email_style,
            "email_num": email_num,
            "domain": domain.astype(str),
            "phone": phone.astype(str),
            "birth": birth,
        }
    )

    def fold(col: str) -> pl.Expr:
        low = pl.col(col).str.to_lowercase()
        return low.str.replace_many(list(_ASCII_FOLD), list(_ASCII_FOLD.values())).str.replace_all(
            "[^a-z]", ""
        )

    f, la, num = fold("first"), fold("last"), pl.col("email_num").cast(pl.String)
    yy = (pl.col("birth").dt.year() % 100).cast(pl.String).str.zfill(2)
    local = (
        pl.when(pl.col("email_style") == 0).then(pl.concat_str([f, pl.lit("."), la, yy]))
        .when(pl.col("email_style") == 1).then(pl.concat_str([f.str.slice(0, 1), la, num]))
        .when(pl.col("email_style") == 2).then(pl.concat_str([f, pl.lit("_"), la, num]))
        .otherwise(pl.concat_str([la, pl.lit("."), f, yy]))
    )  # fmt: skip
    num_s = pl.col("number").cast(pl.String)
    address = (
        pl.when(pl.col("style") == "uk")
        .then(pl.concat_str([num_s, pl.lit(" "), pl.col("street"), pl.lit(", "), pl.col("city"),
                             pl.lit(" "), pl.col("postcode")]))
        .when(pl.col("style") == "fr")
        .then(pl.concat_str([num_s, pl.lit(" "), pl.col("street"), pl.lit(", "),
                             pl.col("postcode"), pl.lit(" "), pl.col("city")]))
        .otherwise(pl.concat_str([pl.col("street"), pl.lit(" "), num_s, pl.lit(", "),
                                  pl.col("postcode"), pl.lit(" "), pl.col("city")]))
    )  # fmt: skip
    out = df.select(
        pl.concat_str([pl.col("first"), pl.lit(" "), pl.col("last")]).alias("name"),
        pl.concat_str([local, pl.lit("@"), pl.col("domain")]).alias("email"),
        pl.when(pl.Series(null_phone)).then(None).otherwise(pl.col("phone")).alias("phone"),
        pl.when(pl.Series(null_address)).then(None).otherwise(address).alias("address"),
        pl.when(pl.Series(null_birth)).then(None)
        .otherwise(pl.col("birth").dt.strftime("%Y-%m-%d")).alias("birth_date"),
    )  # fmt: skip
    return out, ip


def _new_users(
    rng: np.random.Generator,
    n: int,
    country_p: np.ndarray,
    signup_day: int,
    ref: date,
) -> tuple[_Users, pl.DataFrame]:
    """Draw n new users: latent attributes plus their CSV columns (without id and signup_at)."""
    country = rng.choice(len(COUNTRIES), n, p=country_p)
    region = _REGION_OF_COUNTRY[country]
    age = np.clip(rng.normal(42.0, 14.0, n), 18.0, 84.0).round()
    age_z = (age - 45.0) / 15.0
    taste = (
        _CATEGORY_APPEAL[None, :] + _REGION_TASTE[region] + age_z[:, None] * _AGE_TASTE[None, :]
        + rng.normal(0.0, 0.8, (n, len(CATEGORIES)))
    ).astype(np.float32)  # fmt: skip
    age_sens = np.where(age < 30, 1.25, np.where(age < 55, 1.0, 0.8))
    price_sens = rng.lognormal(0.0, 0.35, n) * age_sens * _REGION_PRICE_SENS[region]
    pets = rng.random(n) < 0.35
    home_light = rng.choice(3, n, p=[0.30, 0.45, 0.25])
    nordic = region == 4
    activity = _SESSIONS_PER_USER_DAY * rng.lognormal(-0.32, 0.8, n) * np.where(nordic, 1.2, 1.0)
    base_mobile = np.where(age < 35, 0.65, np.where(age < 55, 0.5, 0.3)) + 0.15 * nordic
    mobile = np.clip(base_mobile + rng.normal(0.0, 0.15, n), 0.05, 0.95)
    device = _draw_device(rng.random(n), mobile)
    personal, ip = _personal_data(rng, country, age, ref)
    users = _Users(
        signup_day=np.full(n, signup_day),
        region=region,
        country=country,
        age=age,
        taste=taste,
        price_sens=price_sens,
        pets=pets,
        home_light=home_light,
        activity=activity,
        mobile=mobile,
        home_ip=ip,
        pii=personal.select("name", "email", "phone"),
    )
    csv = personal.with_columns(
        _ip_strings(ip).alias("ip_address"),
        pl.Series("country", np.array(COUNTRIES)[country]),
        pl.Series("region", np.array(REGIONS)[region]),
        pl.Series("device", np.array(DEVICES)[device]),
    )
    return users, csv


def _draw_device(u: np.ndarray, mobile: np.ndarray) -> np.ndarray:
    """Return device codes: mobile with probability `mobile`, else desktop 80% / tablet 20%."""
    return np.where(u < mobile, 1, np.where(u < mobile + (1.0 - mobile) * 0.8, 0, 2))


def _users_file(csv: pl.DataFrame, first_number: int, signup_us: np.ndarray) -> pl.DataFrame:
    """Return the users CSV frame of users already in sign-up order."""
    return csv.with_columns(
        _ids(np.arange(first_number, first_number + csv.height), "u", 6).alias("user_id"),
        _format_us(signup_us).alias("signup_at"),
    ).select("user_id", "name", "email", "phone", "address", "birth_date", "ip_address",
             "country", "region", "device", "signup_at")  # fmt: skip


def _in_signup_order(
    users: _Users, csv: pl.DataFrame, signup_us: np.ndarray
) -> tuple[_Users, pl.DataFrame, np.ndarray]:
    """Return users, CSV rows and sign-up times sorted by sign-up time (ids follow that order)."""
    order = np.argsort(signup_us, kind="stable")
    fields = {k: getattr(users, k)[order] for k in users.__dataclass_fields__ if k != "pii"}
    return _Users(**fields, pii=users.pii[order]), csv[order], signup_us[order]


# ------------------------------------------------------------------ one day of behaviour


@dataclass
class _Day:
    events: pl.DataFrame  # typed, in file order; ts as int64 microseconds in `ts_us`
    orders: pl.DataFrame  # order lines: user, plant, util
    sessions: int
    n_orders: int


def _utilities(
    users: _Users, su: np.ndarray, cat: _Catalogue, log_price: np.ndarray, flowering: float
) -> np.ndarray:
    """Return the latent utility of every catalogue plant for the users of some sessions."""
    u = users.taste[su][:, cat.category].astype(np.float64)
    u += cat.quality[None, :]
    u -= _PRICE_WEIGHT * users.price_sens[su][:, None] * (log_price - np.log(_REF_PRICE))[None, :]
    u += _PET_PENALTY * (users.pets[su][:, None] & ~cat.pet_safe[None, :])
    u += _LIGHT_PENALTY[users.home_light[su][:, None], cat.light[None, :]]
    if flowering:
        u += flowering * (cat.category == _FLOWERING)[None, :]
    return u


def _top_k(score: np.ndarray, k: int) -> np.ndarray:
    """Return the column indices of the k largest scores per row, best first."""
    part = np.argpartition(-score, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(score, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _simulate_day(
    cfg: SimConfig, d: int, day: date, users: _Users, cat: _Catalogue, price: np.ndarray,
    seasonal: bool, served: np.ndarray | None = None,
) -> _Day:  # fmt: skip
    rng = _rng(cfg.seed, _S_SESSIONS, d)
    n_plants = len(price)
    active = np.flatnonzero(users.signup_day < d)
    lam = users.activity[active] * _WEEKDAY[day.weekday()]
    if seasonal:
        lam = lam * SEASONAL["traffic"]
    su = np.repeat(active, rng.poisson(lam))
    n_s = len(su)
    # --- session attributes
    mobile = users.mobile[su] + (SEASONAL["mobile"] if seasonal else 0.0)
    device = _draw_device(rng.random(n_s), mobile)
    home = rng.random(n_s) < 0.7
    ip = np.where(home[:, None], users.home_ip[su], rng.integers(1, 255, (n_s, 4)))
    ip[:, 0] = np.where(home, ip[:, 0], rng.integers(2, 224, n_s))
    ip[:, 0] = np.where(np.isin(ip[:, 0], [10, 127, 172, 192]), ip[:, 0] + 1, ip[:, 0])
    start_us = rng.choice(24, n_s, p=_HOUR_P) * 3600 * _US_PER_S + rng.integers(
        0, 3600 * _US_PER_S, n_s
    )
    k_max = min(_MAX_REC, n_plants)
    n_rec = rng.integers(min(5, k_max), k_max + 1, n_s)
    b_max = min(_MAX_BROWSE, n_plants)
    n_browse = np.minimum(rng.poisson(1.3, n_s), b_max)
    # --- recommendation lists and browsing, in chunks of sessions (bounded memory)
    log_price = np.log(price)
    flowering = SEASONAL["flowering"] if seasonal else 0.0
    rec_plants = np.empty((n_s, k_max), dtype=np.int64)
    rec_util = np.empty((n_s, k_max))
    browse_plants = np.empty((n_s, b_max), dtype=np.int64)
    browse_util = np.empty((n_s, b_max))
    chunk = max(1, 2_000_000 // n_plants)
    for lo in range(0, n_s, chunk):
        sl = slice(lo, min(n_s, lo + chunk))
        util = _utilities(users, su[sl], cat, log_price, flowering)
        taste = users.taste[su[sl]][:, cat.category]
        rec_score = 0.6 * cat.quality[None, :] + 0.35 * taste + rng.gumbel(size=util.shape)
        rec_score += 0.5 * flowering * (cat.category == _FLOWERING)[None, :]
        rec_plants[sl] = _top_k(rec_score, k_max)
        rec_plants[sl] = apply_served(rec_plants[sl], su[sl], served, n_plants)  # closed loop
        rec_util[sl] = np.take_along_axis(util, rec_plants[sl], axis=1)
        browse_plants[sl] = _top_k(util + rng.gumbel(size=util.shape), b_max)
        browse_util[sl] = np.take_along_axis(util, browse_plants[sl], axis=1)
    # --- impressions and clicks
    pos = np.arange(1, k_max + 1)
    shown = pos[None, :] <= n_rec[:, None]
    pos_mult = 1.7 * pos**-0.45
    click_bias = _CLICK_BIAS + (SEASONAL["click_logit"] if seasonal else 0.0)  # + 0.0: exact
    p_click = np.clip(pos_mult[None, :] * _sigmoid(click_bias + _CLICK_SLOPE * rec_util), 0, 1)
    clicked = shown & (rng.random(shown.shape) < p_click)
    imp_s, imp_k = np.nonzero(shown)
    clk_s, clk_k = np.nonzero(clicked)
    brw_s, brw_k = np.nonzero(np.arange(b_max)[None, :] < n_browse[:, None])
    # --- visits (a click then its view, or a browsing view), add to cart
    v_s = np.concatenate([clk_s, brw_s])
    v_plant = np.concatenate([rec_plants[clk_s, clk_k], browse_plants[brw_s, brw_k]])
    v_util = np.concatenate([rec_util[clk_s, clk_k], browse_util[brw_s, brw_k]])
    v_click = np.concatenate([np.ones(len(clk_s), bool), np.zeros(len(brw_s), bool)])
    v_key = rng.random(len(v_s))
    atc_bias = _ATC_BIAS + (SEASONAL["cart_logit"] if seasonal else 0.0)
    p_atc = _sigmoid(atc_bias + _ATC_SLOPE * v_util) * cat.in_stock[v_plant]
    v_atc = rng.random(len(v_s)) < p_atc
    qty_extra = np.where(cat.category[v_plant] == _HERB, 0.9, 0.25)
    v_qty = 1 + rng.poisson(qty_extra)
    # --- orders: converting sessions buy most of their cart (one line per plant)
    converts = rng.random(n_s) < (SEASONAL["convert"] if seasonal else _CONVERT_P)
    a = np.flatnonzero(v_atc & converts[v_s])
    a = a[np.lexsort((v_key[a], v_s[a]))]
    keep = rng.random(len(a)) < _KEEP_LINE_P
    first = np.ones(len(a), bool)
    first[1:] = v_s[a][1:] != v_s[a][:-1]
    a = a[keep | first]
    _, uniq = np.unique(v_s[a] * n_plants + v_plant[a], return_index=True)
    o = np.sort(a[uniq])
    # --- assemble event rows: (session, phase, key, sub) gives the order within a session
    n_v, n_o, n_atc = len(v_s), len(o), int(v_atc.sum())
    atc = np.flatnonzero(v_atc)
    sess = np.concatenate([np.arange(n_s), imp_s, clk_s, v_s, v_s[atc], v_s[o]])
    etype = np.concatenate([
        np.full(n_s, _START), np.full(len(imp_s), _IMP), np.full(len(clk_s), _CLICK),
        np.full(n_v, _VIEW), np.full(n_atc, _ATC), np.full(n_o, _ORDER),
    ])  # fmt: skip
    phase = np.concatenate([np.zeros(n_s), np.ones(len(imp_s)),
                            np.full(len(clk_s) + n_v + n_atc, 2),
                            np.full(n_o, 3)])  # fmt: skip
    key = np.concatenate([np.zeros(n_s), imp_k.astype(float), v_key[: len(clk_s)], v_key,
                          v_key[atc], v_key[o]])  # fmt: skip
    sub = np.concatenate([np.zeros(n_s + len(imp_s)), np.zeros(len(clk_s)), np.ones(n_v),
                          np.full(n_atc, 2), np.zeros(n_o)])  # fmt: skip
    plant = np.concatenate([np.full(n_s, -1), rec_plants[imp_s, imp_k], v_plant[: len(clk_s)],
                            v_plant, v_plant[atc], v_plant[o]])  # fmt: skip
    position = np.concatenate([np.zeros(n_s, np.int64), imp_k + 1, clk_k + 1,
                               np.zeros(n_v + n_atc + n_o, np.int64)])  # fmt: skip
    qty = np.concatenate([np.zeros(n_s + len(imp_s) + len(clk_s) + n_v, np.int64), v_qty[atc],
                          v_qty[o]])  # fmt: skip
    after_click = np.concatenate([np.zeros(n_s + len(imp_s) + len(clk_s), bool), v_click,
                                  np.zeros(n_atc + n_o, bool)])  # fmt: skip
    order = np.lexsort((sub, key, phase, sess))
    sess, etype, plant, position, qty, after_click = (
        x[order] for x in (sess, etype, plant, position, qty, after_click)
    )
    # --- timestamps: exponential gaps, cumulated within each session
    n_e = len(sess)
    mean_gap = np.select(
        [etype == _START, (etype == _IMP) & (position == 1), etype == _IMP, etype == _CLICK,
         (etype == _VIEW) & after_click, etype == _VIEW, etype == _ATC],
        [0.0, 0.8, 0.003, 25.0, 1.2, 35.0, 40.0],
        default=0.0,
    )  # fmt: skip
    first_order = (etype == _ORDER) & np.concatenate([[True], etype[:-1] != _ORDER])
    mean_gap = np.where(first_order, 120.0, np.where(etype == _ORDER, 0.002, mean_gap))
    gap = np.minimum(rng.exponential(1.0, n_e) * mean_gap, 1800.0)
    gap_us = (gap * _US_PER_S).astype(np.int64) + (etype != _START)
    csum = np.cumsum(gap_us)
    starts = np.flatnonzero(etype == _START)
    offset = csum - csum[starts][sess]
    duration = np.zeros(n_s, np.int64)
    np.maximum.at(duration, sess, offset)
    t0 = np.maximum(0, np.minimum(start_us, _US_PER_DAY - 1 - duration))
    ts_us = _day_us(day) + np.minimum(t0[sess] + offset, _US_PER_DAY - 1)
    # --- file order: by time, ties by session order
    fo = np.lexsort((np.arange(n_e), ts_us))
    sess, etype, plant, position, qty, ts_us = (
        x[fo] for x in (sess, etype, plant, position, qty, ts_us)
    )
    ekey = (np.uint64(d) << np.uint64(40)) | np.arange(n_e, dtype=np.uint64)
    skey = (np.uint64(d) << np.uint64(28)) | sess.astype(np.uint64)
    is_rec = (etype == _IMP) | (etype == _CLICK)
    has_price = (etype == _ATC) | (etype == _ORDER)
    is_start = etype == _START
    user = su[sess]
    ip_s = _ip_strings(ip[sess])
    df = pl.DataFrame(
        {
            "event_id": _hex(_splitmix64(ekey ^ _seed_key(cfg.seed, 1)), 16, "e"),
            "event_type": np.array(EVENT_TYPES)[etype],
            "ts_us": ts_us,
            "session_id": _hex(_mix48(skey ^ _seed_key(cfg.seed, 2)), 12, "s"),
            "user_id": _ids(user + 1, "u", 6),
            "plant_id": _ids(np.maximum(plant, 0) + 1, "p", 4),
            "rec_id": _hex(_mix48(skey ^ _seed_key(cfg.seed, 3)), 12, "rec_"),
            "position": position,
            "quantity": qty,
            "price": price[np.maximum(plant, 0)],
            "order_id": _hex(_mix48(skey ^ _seed_key(cfg.seed, 4)), 12, "o"),
            "device": np.array(DEVICES)[device[sess]],
            "ip_address": ip_s,
        }
    )
    m = {
        "plant": pl.Series(plant >= 0), "rec": pl.Series(is_rec), "price": pl.Series(has_price),
        "order": pl.Series(etype == _ORDER), "start": pl.Series(is_start),
    }  # fmt: skip
    df = df.with_columns(
        pl.when(m["plant"]).then(pl.col("plant_id")).alias("plant_id"),
        pl.when(m["rec"]).then(pl.col("rec_id")).alias("rec_id"),
        pl.when(m["rec"]).then(pl.col("position")).alias("position"),
        pl.when(m["price"]).then(pl.col("quantity")).alias("quantity"),
        pl.when(m["price"]).then(pl.col("price")).alias("price"),
        pl.when(m["order"]).then(pl.col("order_id")).alias("order_id"),
        pl.when(m["start"]).then(pl.col("device")).alias("device"),
        pl.when(m["start"]).then(pl.col("ip_address")).alias("ip_address"),
    )
    orders = pl.DataFrame({"user": su[v_s[o]], "plant": v_plant[o], "util": v_util[o]})
    return _Day(df, orders, n_s, int(converts[np.unique(v_s[o])].sum()) if n_o else 0)


# ------------------------------------------------------------------ reviews


def _luhn_cards(rng: np.random.Generator, n: int) -> pl.Series:
    """Return n Luhn-valid 16-digit card numbers (Visa-style, grouped by 4)."""
    digits = np.concatenate([np.full((n, 1), 4), rng.integers(0, 10, (n, 14))], axis=1)
    doubled = digits[:, 0::2] * 2  # positions 0, 2, .., 14 are doubled (16 digits in all)
    total = (doubled - 9 * (doubled > 9)).sum(axis=1) + digits[:, 1::2].sum(axis=1)
    full = np.concatenate([digits, ((10 - total % 10) % 10)[:, None]], axis=1) + 48
    groups = np.insert(full, [4, 8, 12], 32, axis=1).astype(np.uint8)
    return pl.Series(np.ascontiguousarray(groups).view("S19").reshape(-1).astype(str))


def _ibans(rng: np.random.Generator, n: int) -> pl.Series:
    """Return n valid (mod-97) German or Austrian IBANs in print format."""
    german = rng.random(n) < 0.6
    bban = rng.integers(0, 10, (n, 18))
    bban[~german, 16:] = 0  # Austrian BBANs have 16 digits; pad and strip below
    country = np.where(german, 1314, 1029)  # DE -> 13 14, AT -> 10 29
    r = np.zeros(n, dtype=np.int64)
    length = np.where(german, 18, 16)
    for i in range(18):  # mod 97 digit by digit over the BBAN, then country + "00"
        r = np.where(i < length, (r * 10 + bban[:, i]) % 97, r)
    r = (r * 10_000 + country) % 97
    check = 98 - (r * 100) % 97
    prefix = np.where(german, "DE", "AT")
    digits = pl.Series(np.ascontiguousarray(bban + 48).astype(np.uint8).view("S18").reshape(-1))
    df = pl.DataFrame({"bban": digits.cast(pl.String), "len": length, "p": prefix, "c": check})
    compact = pl.concat_str(
        [pl.col("p"), pl.col("c").cast(pl.String).str.zfill(2),
         pl.col("bban").str.slice(0, pl.col("len"))]
    )  # fmt: skip
    spaced = compact.str.extract_all(r".{1,4}").list.join(" ")
    return df.select(spaced).to_series()


def _reviews(
    cfg: SimConfig, d: int, day: date, due: pl.DataFrame, users: _Users, cat: _Catalogue,
    first_number: int,
) -> tuple[pl.DataFrame, dict[str, list[str]]]:  # fmt: skip
    """Write the reviews due on day d; return the frame and the ids holding personal data."""
    rng = _rng(cfg.seed, _S_REVIEWS, d)
    n = due.height
    util = due["util"].to_numpy()
    rating = np.clip(np.round(3.4 + 0.9 * util + rng.normal(0.0, 0.8, n)), 1, 5).astype(int)
    template = rng.integers(0, 4, n)
    before = np.array([t[0] for r in range(1, 6) for t in _REVIEW_OPENERS[r]], dtype=object)
    after = np.array([t[1] for r in range(1, 6) for t in _REVIEW_OPENERS[r]], dtype=object)
    tone = np.where(rating <= 2, "neg", np.where(rating == 3, "mid", "pos"))
    second = np.empty(n, dtype=object)
    for t, words in _REVIEW_SECOND.items():
        sel = np.flatnonzero(tone == t)
        second[sel] = _choose_str(rng, words, len(sel))
    personal = rng.random(n) < _PII_REVIEW_P
    kind = np.where(personal, rng.integers(1, 4, n), 0)  # 1 name, 2 email, 3 phone
    financial = np.where(rng.random(n) < _FINANCIAL_REVIEW_P, rng.integers(1, 3, n), 0)
    ts = (
        _day_us(day)
        + rng.choice(24, n, p=_HOUR_P) * 3600 * _US_PER_S
        + rng.integers(0, 3600 * _US_PER_S, n)
    )
    user = due["user"].to_numpy()
    pii = users.pii[user]
    df = pl.DataFrame(
        {
            "user": user,
            "plant": due["plant"].to_numpy(),
            "rating": rating,
            "before": before[(rating - 1) * 4 + template].astype(str),
            "after": after[(rating - 1) * 4 + template].astype(str),
            "plant_name": cat.name[due["plant"].to_numpy()].astype(str),
            "second": second.astype(str),
            "kind": kind,
            "financial": financial,
            "card": _luhn_cards(rng, n),
            "iban": _ibans(rng, n),
            "ts_us": ts,
        }
    ).with_columns(pii.get_columns())
    fin_c = pl.col("financial")
    # an author without a phone number signs with the name instead
    kind = pl.when((pl.col("kind") == 3) & pl.col("phone").is_null()).then(1)
    kind = kind.otherwise(pl.col("kind"))
    suffix = (
        pl.when(kind == 1).then(pl.concat_str([pl.lit(" Thanks, "), pl.col("name")]))
        .when(kind == 2).then(pl.concat_str([pl.lit(" Questions? Write to "), pl.col("email"),
                                             pl.lit(".")]))
        .when(kind == 3).then(pl.concat_str([pl.lit(" Call me on "), pl.col("phone"),
                                             pl.lit(" if you need photos.")]))
        .otherwise(pl.lit(""))
    )  # fmt: skip
    money = (
        pl.when(fin_c == 1).then(pl.concat_str([pl.lit(" I was charged twice on card "),
                                                pl.col("card"), pl.lit(", please refund.")]))
        .when(fin_c == 2).then(pl.concat_str([pl.lit(" Please refund to my account "),
                                              pl.col("iban"), pl.lit(".")]))
        .otherwise(pl.lit(""))
    )  # fmt: skip
    text = pl.concat_str(
        [pl.col("before"), pl.col("plant_name"), pl.col("after"), pl.lit(" "), pl.col("second"),
         money, suffix]
    )  # fmt: skip
    out = df.with_columns(text.alias("text"), kind.alias("kind")).sort(
        "ts_us", "user", "plant", maintain_order=True
    )
    out = out.with_columns(
        _ids(np.arange(first_number, first_number + n), "r", 7).alias("review_id"),
        _ids(out["user"].to_numpy() + 1, "u", 6).alias("user_id"),
        _ids(out["plant"].to_numpy() + 1, "p", 4).alias("plant_id"),
        _format_us(out["ts_us"].to_numpy()).alias("ts"),
    )
    planted = {
        name: out.filter(cond)["review_id"].to_list()
        for name, cond in (
            ("name", pl.col("kind") == 1), ("email", pl.col("kind") == 2),
            ("phone", pl.col("kind") == 3), ("card", pl.col("financial") == 1),
            ("iban", pl.col("financial") == 2),
        )
    }  # fmt: skip
    return out.select("review_id", "user_id", "plant_id", "rating", "text", "ts"), planted


# ------------------------------------------------------------------ faults in event files

_DETAIL = {
    ("malformed", ""): "JSON line cut at half its length (invalid JSON)",
    ("duplicates", "same"): "exact copy of an event of this file (same event_id)",
    (
        "duplicates",
        "next",
    ): "event of the previous day's file re-emitted (same event_id and values)",
    ("late", ""): "event of the previous day (ts on that day) delivered in this file; valid row",
    ("wrong_type", "quantity"): "quantity is a non-numeric string",
    ("wrong_type", "price"): "price is a non-numeric string",
    ("future", "ahead"): "ts one year in the future",
    ("future", "2019"): "ts in 2019, before the shop opened",
    ("missing_field", ""): 'required key "user_id" missing',
    ("non_utf8", ""): 'invalid UTF-8 bytes 0xff 0xfe at the start of the "device" value',
}
_NON_UTF8_MARK = "@@NON-UTF8@@"


@dataclass
class _Carry:
    lines: pl.Series
    fault: pl.Series
    variant: pl.Series


def _pick(rng: np.random.Generator, free: np.ndarray, cands: np.ndarray, k: int) -> np.ndarray:
    """Pick up to k candidates not yet used, mark them used and return them sorted."""
    cands = cands[free[cands]]
    chosen = np.sort(rng.choice(cands, min(k, len(cands)), replace=False))
    free[chosen] = False
    return chosen


def _event_files(
    cfg: SimConfig, d: int, day: date, last: bool, df: pl.DataFrame, carry: _Carry | None
) -> tuple[pl.Series, pl.DataFrame, _Carry | None, pl.Series | None]:
    """Inject the configured faults into one day's events.

    Return the file's lines, a frame of (line, fault, variant) for faulty lines, the
    lines carried into the next day's file, and the lines of a part2 file (or None).
    """
    faults = set(cfg.faults)
    rng = _rng(cfg.seed, _S_FAULTS, d)
    n = df.height
    k = max(1, round(cfg.fault_rate * n)) if n and cfg.fault_rate > 0 else 0
    free = np.ones(n, bool)
    every = np.arange(n)
    etype = df["event_type"].to_numpy()
    empty = np.zeros(0, np.int64)
    pick = {}
    priced = np.flatnonzero(np.isin(etype, ["add_to_cart", "order"]))
    pick["wrong_type"] = _pick(rng, free, priced, k) if "wrong_type" in faults else empty
    tail = every[int(n * 0.8) :]
    pick["late"] = _pick(rng, free, tail, k) if "late" in faults and not last else empty
    pick["duplicates"] = _pick(rng, free, every, k) if "duplicates" in faults else empty
    pick["malformed"] = _pick(rng, free, every, k) if "malformed" in faults else empty
    pick["missing_field"] = _pick(rng, free, every, k) if "missing_field" in faults else empty
    kf = max(1, k // 2) if k else 0
    pick["ahead"] = _pick(rng, free, every, kf) if "future" in faults else empty
    pick["2019"] = _pick(rng, free, every, kf) if "future" in faults else empty
    starts = np.flatnonzero(etype == "session_start")
    first = d == cfg.first_day
    pick["non_utf8"] = _pick(rng, free, starts, 1) if "non_utf8" in faults and first else empty
    part2 = empty
    if "truncated_gzip" in faults and first and n > 1:
        part2 = _pick(rng, free, every, max(1, round(0.05 * n)))
    # typed changes
    ts = df["ts_us"].to_numpy().copy()
    ts[pick["ahead"]] += 365 * _US_PER_DAY
    day_2019 = day.replace(year=2019, day=min(day.day, 28))
    ts[pick["2019"]] -= _day_us(day) - _day_us(day_2019)
    lines = _jsonl(df.with_columns(_format_us(ts).alias("ts_us")).rename({"ts_us": "ts"}))
    fault = np.full(n, "", dtype=object)
    variant = np.full(n, "", dtype=object)
    # string-level changes
    lf = pl.DataFrame({"line": lines, "i": every})
    wt = pick["wrong_type"]
    on_qty = np.zeros(n, bool)
    on_qty[wt[rng.random(len(wt)) < 0.5]] = True
    on_price = np.zeros(n, bool)
    on_price[wt] = True
    on_price &= ~on_qty
    qty_word = _choose_str(rng, ("two", "three", "a few"), n)
    price_word = _choose_str(rng, ("abc", "n/a", "twelve"), n)
    masks = {name: np.zeros(n, bool) for name in ("malformed", "missing_field", "non_utf8")}
    for name in masks:
        masks[name][pick[name]] = True
    line = pl.col("line")
    lf = lf.with_columns(
        pl.when(pl.Series(on_qty))
        .then(line.str.replace(r'"quantity":\d+', pl.concat_str(
            [pl.lit('"quantity":"'), pl.Series(qty_word.astype(str)), pl.lit('"')])))
        .when(pl.Series(on_price))
        .then(line.str.replace(r'"price":[0-9.eE+-]+', pl.concat_str(
            [pl.lit('"price":"'), pl.Series(price_word.astype(str)), pl.lit('"')])))
        .when(pl.Series(masks["missing_field"]))
        .then(line.str.replace(r'"user_id":"[^"]*",', ""))
        .when(pl.Series(masks["non_utf8"]))
        .then(line.str.replace('"device":"', '"device":"' + _NON_UTF8_MARK, literal=True))
        .otherwise(line).alias("line")
    ).with_columns(
        pl.when(pl.Series(masks["malformed"]))
        .then(line.str.slice(0, line.str.len_chars() // 2)).otherwise(line).alias("line")
    )  # fmt: skip
    lines = lf["line"]
    fault[wt], variant[on_qty], variant[wt[~on_qty[wt]]] = "wrong_type", "quantity", "price"
    for name in ("malformed", "missing_field", "non_utf8"):
        fault[pick[name]] = name
    fault[pick["ahead"]], variant[pick["ahead"]] = "future", "ahead"
    fault[pick["2019"]], variant[pick["2019"]] = "future", "2019"
    # split into this file, the next day's file and the part2 file
    dup = pick["duplicates"]
    to_next = np.zeros(len(dup), bool) if last else rng.random(len(dup)) < 0.5
    stay = np.ones(n, bool)
    stay[pick["late"]] = False
    stay[part2] = False
    keys = [every[stay].astype(float)]
    parts = [lines.filter(pl.Series(stay))]
    f_parts, v_parts = [fault[stay]], [variant[stay]]
    same = dup[~to_next]
    keys.append(rng.uniform(0, n, len(same)))
    parts.append(lines.gather(same))
    f_parts.append(np.full(len(same), "duplicates", dtype=object))
    v_parts.append(np.full(len(same), "same", dtype=object))
    if carry is not None:
        m = carry.lines.len()
        late = (carry.fault == "late").to_numpy()
        keys.append(np.where(late, n + np.arange(m), rng.uniform(0, n, m)))
        parts.append(carry.lines)
        f_parts.append(carry.fault.to_numpy().astype(object))
        v_parts.append(carry.variant.to_numpy().astype(object))
    key = np.concatenate(keys)
    order = np.argsort(key, kind="stable")
    out = pl.concat(parts).gather(order)
    f_all = np.concatenate(f_parts)[order]
    v_all = np.concatenate(v_parts)[order]
    faulty = np.flatnonzero(f_all != "")
    tags = pl.DataFrame(
        {
            "line": faulty + 1,
            "fault": f_all[faulty].astype(str),
            "variant": v_all[faulty].astype(str),
        },
        schema={"line": pl.Int64, "fault": pl.String, "variant": pl.String},
    )
    next_idx = np.concatenate([pick["late"], dup[to_next]])
    new_carry = None
    if len(next_idx):
        new_carry = _Carry(
            lines.gather(next_idx),
            pl.Series(["late"] * len(pick["late"]) + ["duplicates"] * int(to_next.sum())),
            pl.Series([""] * len(pick["late"]) + ["next"] * int(to_next.sum())),
        )
    part2_lines = lines.gather(part2) if len(part2) else None
    return out, tags, new_carry, part2_lines


# ------------------------------------------------------------------ writing


class _Export:
    """Write files, recording rows, bytes and sha256, and collect fault records.

    Event files are compressed and written by one background thread, overlapping the
    next day's generation; at most one compression is pending at a time.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: list[dict] = []
        self.faults: list[dict] = []
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._pending: Future | None = None
        #: False while generating the days of an export being continued: nothing is written
        self.active = True

    def write_gzip(self, rel: str, payload: bytes, rows: int) -> None:
        if not self.active:
            return
        self.wait()
        self._pending = self._pool.submit(lambda: self.write(rel, _gzip(payload), rows))

    def wait(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)

    def write(self, rel: str, data: bytes, rows: int) -> None:
        if not self.active:
            return
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.files.append(
            {
                "path": rel,
                "rows": rows,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )

    def fault(self, fault: str, rel: str, lines: list[int], detail: str, count: int | None = None):
        if not self.active:
            return
        self.faults.append(
            {"fault": fault, "file": rel, "lines": lines, "count": len(lines) if count is None
             else count, "detail": detail}
        )  # fmt: skip


def _write_events(
    exp: _Export, cfg: SimConfig, d: int, day: date, events: pl.DataFrame, carry: _Carry | None
) -> _Carry | None:
    """Write one day's events file (and fault files) and record the faults; return the carry."""
    faults, last = set(cfg.faults), d == cfg.days - 1
    rel = f"events/events-{day}.jsonl.gz"
    # the day before the first written one was the last day of the export being
    # continued: it carried nothing into a next file then, so it carries nothing now
    closes = last or d == cfg.first_day - 1
    lines, tags, carry, part2 = _event_files(cfg, d, day, closes, events, carry)
    if lines.len():  # a day without events gets no file
        if "changed_column" in faults and last:
            lines = lines.str.replace('"price":', '"unit_price":', literal=True)
            detail = 'key "price" renamed to "unit_price" in every line'
            exp.fault("changed_column", rel, [], detail)
        payload = _join_lines(lines).replace(_NON_UTF8_MARK.encode(), b"\xff\xfe")
        exp.write_gzip(rel, payload, lines.len())
        for (fault, variant), group in tags.group_by(["fault", "variant"], maintain_order=True):
            detail = _DETAIL[(str(fault), str(variant))]
            exp.fault(str(fault), rel, sorted(group["line"].to_list()), detail)
    if part2 is not None:
        rel2 = f"events/events-{day}-part2.jsonl.gz"
        data = _gzip(_join_lines(part2))
        exp.write(rel2, data[: int(len(data) * 0.6)], part2.len())
        detail = (
            f"gzip stream cut (last 40% of bytes dropped); its {part2.len()} events of the day "
            "appear in no other file"
        )
        exp.fault("truncated_gzip", rel2, [], detail, count=part2.len())
    if "empty_file" in faults and d == cfg.first_day:
        rel3 = f"events/events-{day}-extra.jsonl"
        exp.write(rel3, b"", 0)
        exp.fault("empty_file", rel3, [], "empty file (0 bytes)", count=0)
    return carry


def _csv(df: pl.DataFrame) -> bytes:
    return df.write_csv(line_terminator="\n").encode("utf-8")


def _clear_previous(out_dir: Path) -> None:
    """Delete the files listed by a previous manifest in out_dir (and that manifest)."""
    manifest = out_dir / MANIFEST
    if not manifest.exists():
        return
    try:
        old = json.loads(manifest.read_text(encoding="utf-8"))
        paths = [f["path"] for f in old.get("files", [])]
    except (ValueError, KeyError, TypeError, AttributeError):
        paths = []
    for rel in paths:
        p = (out_dir / rel).resolve()
        if p.is_file() and out_dir.resolve() in p.parents:
            p.unlink()
    manifest.unlink()


def _generate(cfg: SimConfig, exp: _Export, served=None) -> tuple[dict, dict[str, list], dict]:
    """Write every file of the export day by day; return drift info, planted PII and totals."""
    start = cfg.start_date
    drift_day = cfg.drift_day
    drifts = set(cfg.drift)
    faults = set(cfg.faults)

    cat = _catalogue(cfg)
    exp.active = cfg.first_day == 0
    exp.write(f"plants/plants-{start}.csv", _csv(cat.frame), cat.frame.height)
    exp.active = True
    drift_info: dict = {"kinds": sorted(drifts), "start": None, **changed_columns(drifts)}
    new_price = cat.price
    if drift_day is not None:
        drift_info["start"] = (start + timedelta(days=drift_day)).isoformat()
    if "price_change" in drifts:
        assert drift_day is not None
        day = start + timedelta(days=drift_day)
        frame, new_price, info = _price_change(cfg, cat, day)
        exp.write(f"plants/plants-{day}.csv", _csv(frame), frame.height)
        drift_info["price_change"] = info | {"file": f"plants/plants-{day}.csv"}
    if "seasonal" in drifts:  # its magnitudes, as price_change records its own
        drift_info["seasonal"] = dict(SEASONAL)

    # initial population: signed up between the opening and the start
    rng0 = _rng(cfg.seed, _S_USERS0)
    users, csv0 = _new_users(rng0, cfg.users, _BASE_COUNTRY_P, -1, start)
    lo_us, hi_us = _day_us(SHOP_OPENED), _day_us(start)
    if hi_us <= lo_us:
        hi_us = lo_us + _US_PER_DAY
    signup0 = rng0.integers(lo_us, hi_us, cfg.users)
    users, csv0, signup0 = _in_signup_order(users, csv0, signup0)
    first_file = _users_file(csv0, 1, signup0)

    totals = {"events": 0, "sessions": 0, "orders": 0, "order_lines": 0, "reviews": 0,
              "signups": 0}  # fmt: skip
    planted: dict[str, list[str]] = {k: [] for k in ("name", "email", "phone", "card", "iban")}
    pending = pl.DataFrame(schema={"due": pl.Int64, "user": pl.Int64, "plant": pl.Int64,
                                   "util": pl.Float64})  # fmt: skip
    carry: _Carry | None = None
    review_malformed_done = False
    for d in range(cfg.days):
        day = start + timedelta(days=d)
        last = d == cfg.days - 1
        exp.active = d >= cfg.first_day
        drifted = drift_day is not None and d >= drift_day
        # --- sign-ups of the day (active from the next day)
        rng_s = _rng(cfg.seed, _S_SIGNUP, d)
        n_new = max(1, int(rng_s.poisson(_SIGNUPS_PER_DAY * cfg.users)))
        new, csv = _new_users(rng_s, n_new, _BASE_COUNTRY_P, d, day)
        signup = _day_us(day) + rng_s.integers(0, _US_PER_DAY, n_new)
        if "new_region" in drifts and drifted:
            rng_n = _rng(cfg.seed, _S_NORDIC, d)
            n_nord = int(rng_n.poisson(_NORDIC_SIGNUPS_PER_DAY * cfg.users))
            nord, csv_n = _new_users(rng_n, n_nord, _NORDIC_COUNTRY_P, d, day)
            new, csv = new.extend(nord), pl.concat([csv, csv_n])
            signup = np.concatenate([signup, _day_us(day) + rng_n.integers(0, _US_PER_DAY, n_nord)])
        if len(users) + len(new) > MAX_USERS:
            raise ValueError(f"more than {MAX_USERS} users: lower users or days")
        new, csv, signup = _in_signup_order(new, csv, signup)
        day_file = _users_file(csv, len(users) + 1, signup)
        users = users.extend(new)
        if d == 0:
            day_file = pl.concat([first_file, day_file])
        rel = f"users/users-{day}.csv"
        if "changed_column" in faults and last:
            tiers = _choose_str(_rng(cfg.seed, _S_FAULTS, 10_000 + d), ("bronze", "silver", "gold"),
                                day_file.height)  # fmt: skip
            day_file = day_file.with_columns(pl.Series("loyalty_tier", tiers.astype(str)))
            exp.fault("changed_column", rel, [], 'unexpected extra column "loyalty_tier"')
        exp.write(rel, _csv(day_file), day_file.height)
        # --- behaviour
        price = new_price if ("price_change" in drifts and drifted) else cat.price
        sim = _simulate_day(cfg, d, day, users, cat, price, "seasonal" in drifts and drifted,
                            served.table(d, len(users)) if served else None)  # fmt: skip
        totals["sessions"] += sim.sessions
        totals["orders"] += sim.n_orders
        totals["order_lines"] += sim.orders.height
        totals["events"] += sim.events.height
        # --- reviews due today (for orders of earlier days), then plan reviews of today's orders
        due = pending.filter(pl.col("due") == d)
        pending = pending.filter(pl.col("due") > d)
        if due.height:
            reviews, who = _reviews(cfg, d, day, due, users, cat, totals["reviews"] + 1)
            for k_, ids in who.items():
                planted[k_] += ids
            lines = _jsonl(reviews)
            rel = f"reviews/reviews-{day}.jsonl"
            if (
                "malformed" in faults
                and not review_malformed_done
                and exp.active
                and reviews.height >= 2
            ):
                i = int(_rng(cfg.seed, _S_FAULTS, 20_000 + d).integers(0, reviews.height))
                bad = lines[i]
                lines = lines.scatter(i, bad[: len(bad) // 2])
                exp.fault("malformed", rel, [i + 1], _DETAIL[("malformed", "")])
                review_malformed_done = True
            exp.write(rel, _join_lines(lines), reviews.height)
            totals["reviews"] += reviews.height
        rng_p = _rng(cfg.seed, _S_REVIEW_PLAN, d)
        o = sim.orders
        wants = rng_p.random(o.height) < _REVIEW_P * _sigmoid(1.0 + np.abs(o["util"].to_numpy()))
        delay = 1 + rng_p.geometric(0.3, o.height)
        planned = o.filter(pl.Series(wants)).select(
            pl.Series("due", d + delay[wants], dtype=pl.Int64),
            pl.col("user").cast(pl.Int64),
            pl.col("plant").cast(pl.Int64),
            pl.col("util").cast(pl.Float64),
        )
        pending = pl.concat([pending, planned])
        # --- events file(s) with faults
        carry = _write_events(exp, cfg, d, day, sim.events, carry)

    totals["users"] = len(users)
    totals["signups"] = len(users) - cfg.users
    return drift_info, planted, totals


def simulate(config: SimConfig, out_dir: Path) -> dict:
    """Generate the landing export of `config` under out_dir; return (and write) the manifest.

    Files listed by an earlier manifest in out_dir are removed first; other files are
    left alone.  See the module docstring for the layout.
    """
    cfg = config
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.first_day:
        raise ValueError("simulate writes whole exports; continue one with simulate_more")
    _clear_previous(out_dir)
    return _export(cfg, out_dir)


def _config_dict(cfg: SimConfig) -> dict:
    """Return the config as recorded in the manifest (first_day only when set)."""
    out = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
    if not out["first_day"]:
        del out["first_day"]
    return out


def simulate_more(
    out_dir: Path,
    days: int,
    *,
    drift: tuple[str, ...] | None = None,
    drift_start: str | None = None,
    faults: tuple[str, ...] | None = None,
    fault_rate: float | None = None,
    served: pl.DataFrame | None = None,
) -> dict:
    """Continue the export in out_dir by `days` more days; return (and write) the manifest.

    The export's manifest gives its config; the new days are days
    `old.days .. old.days + days - 1` of the same shop (same seed, users, catalogue),
    so sign-ups get new user ids, earlier users keep buying and reviews of earlier
    orders arrive.  Only the new days' files are written; existing files are left
    alone.  `drift` (default: the export's own) starts on `drift_start`, by default the
    first new day; `faults` (default: none) are injected into the new days only, the
    once-per-export ones (non_utf8, truncated_gzip, empty_file) on the first new day.
    The manifest keeps every file and fault and records each continuation.
    `served`: rows (user_id, plant_id, rank, as_of) buyers see from as_of on (`_closed_loop`).

    Examples
    --------
    >>> simulate_more(Path("data"), 3, drift=("new_region",))  # doctest: +SKIP
    """
    out_dir = Path(out_dir)
    path = out_dir / MANIFEST
    if not path.exists():
        raise ValueError(f"{path}: no manifest, so no export to continue; run simulate first")
    old = json.loads(path.read_text(encoding="utf-8"))
    if old.get("generator") != "hortus.plantshop.simulate" or "config" not in old:
        raise ValueError(f"{path}: not a manifest written by hortus.domains.plantshop.simulate")
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    base = dict(old["config"])
    first = int(base["days"])
    new_start = date.fromisoformat(base["start"]) + timedelta(days=first)
    if drift and base.get("drift") and tuple(drift) != tuple(base["drift"]):
        raise ValueError(
            f"{path}: the export already drifts ({', '.join(base['drift'])} from "
            f"{base.get('drift_start') or old['drift']['start']}); continue it without "
            "--drift or simulate a new export"
        )
    if drift:
        begins = drift_start or new_start.isoformat()
        if _parse_date(begins, "drift_start") < new_start:
            raise ValueError(
                f"drift_start {begins} is before the first new day {new_start}: the days "
                "already written cannot drift"
            )
        base["drift"] = tuple(drift)
        base["drift_start"] = begins
    elif base.get("drift") and not base.get("drift_start"):
        base["drift_start"] = old["drift"]["start"]  # keep the export's drift day fixed
    base.update(days=first + days, first_day=first, faults=tuple(faults or ()))
    if fault_rate is not None:
        base["fault_rate"] = fault_rate
    cfg = SimConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in base.items()})
    return _export(cfg, out_dir, previous=old, served=Served.of(served, cfg.start_date))


def _export(cfg: SimConfig, out_dir: Path, previous: dict | None = None, served=None) -> dict:
    """Generate `cfg` into out_dir and write the manifest (merged with `previous`)."""
    exp = _Export(out_dir)
    try:
        drift_info, planted, totals = _generate(cfg, exp, served)
    finally:
        exp.close()
    start = cfg.start_date
    manifest = {
        "format_version": FORMAT_VERSION,
        "generator": "hortus.plantshop.simulate",
        "config": _config_dict(cfg),
        "window": {"start": start.isoformat(),
                   "end": (start + timedelta(days=cfg.days - 1)).isoformat(), "days": cfg.days},
        "shop_opened": SHOP_OPENED.isoformat(),
        "drift": drift_info,
        "files": sorted(exp.files, key=lambda f: f["path"]),
        "faults": sorted(exp.faults, key=lambda f: (f["file"], f["fault"], f["detail"])),
        "pii_in_reviews": planted,
        "totals": totals,
    }  # fmt: skip
    if previous is not None:
        first = start + timedelta(days=cfg.first_day)
        manifest["files"] = sorted(previous["files"] + manifest["files"], key=lambda f: f["path"])
        manifest["faults"] = sorted(
            previous["faults"] + manifest["faults"],
            key=lambda f: (f["file"], f["fault"], f["detail"]),
        )
        manifest["continued"] = [
            *previous.get("continued", [{"config": previous["config"], "from": cfg.start}]),
            {"config": manifest["config"], "from": first.isoformat()} | Served.note(served),
        ]
    text = json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    (out_dir / MANIFEST).write_text(text, encoding="utf-8")
    return manifest
