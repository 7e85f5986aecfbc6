"""The phrase tables of radmi's report labeler (:mod:`radmi.data.labeler`), written for radmi.

Every entry is a Python regular expression over a *normalized* sentence: lower case, hyphens turned into
spaces (``"right-sided"`` -> ``"right sided"``), single spaces between words. Entries are whole words or word
runs; the labeler adds the word boundaries and compiles each table into one combined pattern.

Three kinds of finding phrases:

- ``MENTIONS``: a finding is described (``"small left pleural effusion"`` -> Pleural Effusion).
- ``WEAK_MENTIONS``: an indirect sign of a finding (``"blunting of the costophrenic angle"``). It counts as a
  positive mention only when the same sentence has no direct mention of that finding, so that "blunting of
  the angle may represent a small effusion" is uncertain, not positive.
- ``NORMALS``: a statement that an organ is normal (``"heart size is normal"``), read as a negative (0.0).

A table key is a tuple of CheXpert names: one phrase may speak about two findings (``"hydropneumothorax"``).

Cues (``CUES``) change what a mention means; see ``docs/labeling.md`` for the scope rules.
"""

from __future__ import annotations

# ---- shared fragments -------------------------------------------------------------------------------------
#: a copula, optionally followed by a time word ("is again", "remains", "appears to be")
BE = r"(?:is|are|was|were|remains?|appears?|seems?|looks?)(?: to be)?(?: (?:again|still|now|stably|persistently))?"
#: degree adverbs between a copula and an adjective; hedges are allowed here and detected inside the mention
DEGREE = (
    r"(?:(?:mildly|moderately|severely|markedly|massively|slightly|minimally|very|quite|significantly|"
    r"substantially|somewhat|grossly|increasingly|further|at least|likely|possibly|probably|borderline|"
    r"again|still|now|stably|persistently|newly|also|more|less) )*"
)
# Leading optional words ("the", degree adverbs, "right") are left out of phrase STARTS on purpose: a mention
# found from its head word on is the same mention, and a narrow set of first characters is what keeps the one
# combined scan fast (see radmi.data.labeler._lookahead).
HEART = (
    r"(?:heart size|size of the heart|heart|cardiac silhouette|cardiac size|cardiac shadow|"
    r"cardiac contours?|cardiac diameter)"
)
MEDIASTINUM = (
    r"(?:cardiomediastinal and hilar contours|cardiomediastinal silhouette|cardiomediastinal contours?|"
    r"mediastinal and hilar contours|mediastinal silhouette|mediastinal contours?|mediastinal width|"
    r"(?:superior |upper )?mediastinum|hilar contours?)"
)
CP_ANGLE = r"(?:costophrenic|cp) (?:angles?|sulc(?:us|i))"
CP_ANGLE_AFTER = r"(?:the )?(?:(?:right|left|bilateral|both|lateral|posterior) )*" + CP_ANGLE
NORMAL_WORD = r"(?:normal|within normal limits|unremarkable|top normal|top of normal|upper (?:limits? of )?normal)"

# ---- findings ---------------------------------------------------------------------------------------------
ENLARGED_CM = ("Enlarged Cardiomediastinum",)
CARDIOMEGALY = ("Cardiomegaly",)
LESION = ("Lung Lesion",)
OPACITY = ("Lung Opacity",)
EDEMA = ("Edema",)
CONSOLIDATION = ("Consolidation",)
PNEUMONIA = ("Pneumonia",)
ATELECTASIS = ("Atelectasis",)
PNEUMOTHORAX = ("Pneumothorax",)
EFFUSION = ("Pleural Effusion",)
PLEURAL_OTHER = ("Pleural Other",)
FRACTURE = ("Fracture",)
DEVICES = ("Support Devices",)

#: Phrases that look like a finding but are not one (matched first and ignored): "pericardial effusion" is
#: not a pleural effusion, "soft tissue edema" not pulmonary edema, "osseous lesion" not a lung lesion.
BLOCKERS: tuple[str, ...] = (
    r"pericardial effusions?",
    r"(?:joint|knee|shoulder) effusions?",
    r"(?:soft tissue|subcutaneous|chest wall|facial|upper extremity|lower extremity|arm|scrotal|body wall) edema",
    r"(?:osseous|lytic|sclerotic|blastic|bony|bone|skin|cutaneous|liver|hepatic|renal|adrenal) (?:lesions?|mass(?:es)?)",
    r"(?:soft tissue|breast|neck|thyroid|abdominal) (?:mass(?:es)?|densit(?:y|ies))",
    r"mass effect",
    r"(?:bone|breast|bony) density",
    r"(?:sternotomy|sternal|surgical|cerclage) wires?",
    r"nipple shadows?",
    r"healed (?:rib )?fractures? deformit(?:y|ies)",
)

MENTIONS: dict[tuple[str, ...], tuple[str, ...]] = {
    ENLARGED_CM: (
        MEDIASTINUM + " " + BE + " " + DEGREE + r"(?:widened|enlarged|wide|prominent|increased|abnormal|"
        r"lobulated|shifted|splayed)",
        r"(?:widened|widening of the|enlarged|wide|prominent|prominence of the|enlargement of the) "
        r"(?:upper |superior )?(?:mediastinum|cardiomediastinal silhouette|mediastinal silhouette|"
        r"mediastinal contours?|cardiomediastinal contours?)",
        r"mediastinal (?:widening|enlargement|prominence|mass(?:es)?|lymphadenopathy|"
        r"adenopathy|lymph node enlargement)",
        r"enlarged cardiomediastinum",
        r"(?:hilar|mediastinal) (?:lymphadenopathy|adenopathy|enlargement)|lymphadenopathy|adenopathy",
    ),
    CARDIOMEGALY: (
        r"cardiomegaly",
        r"cardiac enlargement",
        r"enlargement of the (?:cardiac silhouette|heart|cardiac shadow)",
        HEART + " " + BE + " " + DEGREE + r"(?:enlarged|increased|large|prominent|borderline(?: enlarged| in size)?|"
        r"big|at the upper limits? of normal to mildly enlarged)",
        r"(?:enlarged|large|prominent|increased|borderline) (?:heart size|heart|cardiac silhouette|"
        r"cardiac size|cardiac shadow)",
        r"(?:left|right) ventricular (?:enlargement|hypertrophy)",
        r"(?:left|right) atrial enlargement",
    ),
    LESION: (
        r"nodular (?:opacit(?:y|ies)|densit(?:y|ies)|lesions?|foci|focus)",
        r"nodules?",
        r"nodularity",
        r"mass(?:es)?",
        r"mass like",
        r"lesions?",
        r"granulomas?",
        r"neoplasms?|neoplastic",
        r"tumou?rs?",
        r"carcinoma|lung cancer|malignancy",
        r"metastas[ie]s|metastatic (?:disease|lesions?|deposits?)",
        r"cavitary (?:lesions?|mass(?:es)?)|cavitation|cavity",
    ),
    OPACITY: (
        r"opacit(?:y|ies)",
        r"opacification|opacified",
        r"densit(?:y|ies)",
        r"infiltrates?|infiltration|infiltrative (?:process|changes?)",
        r"air ?space (?:disease|process|filling|opacit(?:y|ies))",
        r"ground glass",
        r"haziness|hazy",
        r"reticular (?:markings|pattern|changes?)|reticulation|reticulonodular",
        r"interstitial (?:markings|abnormalit(?:y|ies)|disease|thickening|prominence|changes?)",
        r"parenchymal (?:abnormalit(?:y|ies)|process|changes?)",
    ),
    EDEMA: (
        r"o?edema",
        r"edematous",
        r"congestive heart failure|chf|(?:congestive )?cardiac (?:failure|decompensation)|heart failure",
        r"(?:pulmonary )?(?:vascular|venous) (?:congestion|engorgement|redistribution|plethora|prominence)",
        r"(?:pulmonary |interstitial )?congestion",
        r"(?:fluid|volume) overload",
        r"(?:engorged|indistinct|prominent) (?:pulmonary )?(?:vessels|vasculature|hila)",
    ),
    CONSOLIDATION: (
        r"consolidations?|consolidative (?:process|changes?)|consolidated|consolidative",
    ),
    PNEUMONIA: (
        r"(?:broncho)?pneumonias?",
        r"pneumonitis",
        r"pneumonic",
        r"(?:infectious|inflammatory) (?:process|etiology|changes?)",
        r"infections?|infectious",
        r"aspiration",
    ),
    ATELECTASIS: (
        r"atelectas[ie]s|atelectatic (?:changes?|lung)?",
        r"(?:lobar |segmental |lung )?collapsed?",
    ),
    PNEUMOTHORAX: (
        r"pneumothora(?:x|ces)",
        r"ptx",
    ),
    PNEUMOTHORAX + EFFUSION: (r"hydropneumothora(?:x|ces)",),
    EFFUSION: (
        r"(?:pleural )?effusions?",
        r"pleural fluid",
        r"hydrothorax",
        r"(?:layering|loculated|fissural|subpulmonic) fluid",
        r"fluid (?:layering|in the (?:major|minor) fissure|tracking|tracks)",
    ),
    PLEURAL_OTHER: (
        r"pleural (?:thickening|plaques?|calcifications?|scarring|based (?:mass|lesion|opacity)|abnormalit(?:y|ies))",
        r"calcified pleural plaques?",
        r"pleural parenchymal scarring",
        r"fibrothorax",
        r"pleural (?:cap|capping)|apical (?:cap|capping|thickening)",
        r"pleural based",
    ),
    FRACTURE: (
        r"fractures?|fractured|fx",
        r"broken ribs?",
    ),
    DEVICES: (
        r"(?:endotracheal|et|ett|tracheostomy|trach|nasogastric|ng|og|orogastric|enteric|feeding|dobhoff|"
        r"dobbhoff|chest|thoracostomy|pleural|mediastinal|nasoenteric|gastric|gastrostomy|g|j|gj|esophageal|"
        r"drainage|pigtail)(?: \w+)? tubes?",
        r"ett|tracheostomy|trach",
        r"tubes?(?: and lines| and catheters)?",
        r"(?:central venous|central|venous|picc|pa|pulmonary artery|swan ganz|swan|dialysis|hemodialysis|"
        r"tunneled|tunnelled|port|arterial|pigtail|ij|internal jugular|subclavian|femoral|triple lumen|"
        r"double lumen|midline|brachiocephalic)(?: \w+)?(?: venous| central venous| dialysis)? (?:catheters?|lines?)",
        r"catheters?",
        r"picc|cvc|cvl|port a cath|portacath|mediport|swan ganz",
        r"pacemaker|pacer|defibrillator|aicd|icd",
        r"(?:pacemaker|pacer|pacing|icd|aicd|defibrillator|transvenous|epicardial) (?:leads?|wires?)",
        r"(?:intra aortic )?balloon pump|iabp|lvad|left ventricular assist device|impella|ecmo cannulas?",
        r"(?:lines and tubes|tubes and lines|lines and catheters|support devices|"
        r"monitoring and support devices|support lines|monitoring leads|devices)",
        r"(?:esophageal|tracheal|airway|bronchial|biliary|coronary|svc) stents?|stents?",
        r"drains?",
        r"line tip",
    ),
}

WEAK_MENTIONS: dict[tuple[str, ...], tuple[str, ...]] = {
    EFFUSION: (
        r"(?:blunting|obliteration) of " + CP_ANGLE_AFTER,
        r"blunted " + CP_ANGLE_AFTER + "?",
        CP_ANGLE + r" (?:blunting|is blunted|are blunted|remains? blunted|obliteration)",
        r"meniscus",
    ),
    EDEMA: (
        r"perihilar (?:haziness|haze|opacit(?:y|ies))",
        r"cephalization",
        r"kerley (?:b )?lines|septal lines",
        r"peribronchial cuffing",
        r"indistinct (?:pulmonary )?vascular (?:markings|structures)",
    ),
    ATELECTASIS: (
        r"(?:linear|streaky|plate like|platelike|discoid|band like|bandlike|subsegmental|strandy) (?:\w+ ){0,2}?"
        r"(?:opacit(?:y|ies)|densit(?:y|ies)|bands?|markings)",
        r"volume loss",
    ),
    CONSOLIDATION: (r"air bronchograms?",),
}

NORMALS: dict[tuple[str, ...], tuple[str, ...]] = {
    CARDIOMEGALY: (
        HEART + " " + BE + " " + r"(?:not enlarged|normal in size|" + NORMAL_WORD + r")(?: in size)?",
        r"(?:normal|unremarkable) (?:heart size|heart|cardiac size|cardiac silhouette|size of the heart|"
        r"cardiac contours?)",
        r"heart size (?:is )?(?:within normal limits|normal)",
        r"heart size and (?:the )?pulmonary (?:vascularity|vasculature) (?:are|is|remain) (?:normal|unremarkable)",
    ),
    # a normal cardiomediastinal silhouette speaks for the heart too (Cardiomegaly is a child of
    # Enlarged Cardiomediastinum in CheXpert's hierarchy); a normal mediastinum alone does not
    ENLARGED_CM + CARDIOMEGALY: (
        r"(?:cardiomediastinal and hilar contours|cardiomediastinal silhouette|cardiomediastinal "
        r"contours?|heart and mediastinum|heart size and (?:the )?(?:cardio)?mediastinal (?:contours?|silhouette)|"
        r"heart and mediastinal contours|heart size,? mediastinal and hilar contours) " + BE + " "
        r"(?:not enlarged|normal in size|stable and normal|" + NORMAL_WORD + r")",
        r"(?:normal|unremarkable) (?:size of the )?(?:cardiomediastinal|cardiomediastinal and hilar) "
        r"(?:silhouette|contours?)",
        r"normal heart size and (?:cardio)?mediastinal (?:contours?|silhouette)",
    ),
    ENLARGED_CM: (
        MEDIASTINUM + " " + BE + " " + r"(?:not widened|not enlarged|normal in (?:size|contour)|stable and normal|"
        + NORMAL_WORD + r")",
        r"(?:normal|unremarkable) (?:mediastinal|hilar|mediastinal and hilar|hilar and mediastinal) "
        r"(?:silhouette|contours?|width)",
        r"normal (?:mediastinum|hila)",
    ),
    EFFUSION: (
        CP_ANGLE + " " + BE + " " + r"(?:sharp|sharply defined|clear|preserved|normal|well defined)",
        r"sharp " + CP_ANGLE_AFTER,
    ),
}

# ---- cues -------------------------------------------------------------------------------------------------
#: Cue tables: ``kind -> phrases``. Direction: ``pre`` acts on mentions after the cue, ``post`` on mentions
#: before it, ``both`` on the nearest mention on each side. Order of matching = order of this dict.
CUES: dict[str, tuple[str, ...]] = {
    # looks like a negation but is not one: the finding is still there
    "pseudo": (
        r"no (?:(?:significant|appreciable|substantial|definite|major|marked|interval|other|further|obvious|"
        r"real|large|gross|relevant|clear) )*(?:change|changes|increase|decrease|progression|worsening|"
        r"improvement|difference|enlargement)",
        r"not (?:(?:significantly|substantially|appreciably|markedly|much|definitely|clearly|been|grossly) )*"
        r"(?:changed|increased|decreased|improved|worsened|different|progressed|altered)",
        r"without (?:(?:significant|appreciable|substantial|interval|definite|further) )*(?:change|changes|"
        r"increase|decrease|progression|worsening|improvement)",
        r"(?:partial|partially|near(?:ly)? complete|incomplete|slight|some|interval partial|partly|"
        r"improving|incompletely) (?:resolution|resolved|resolving|clearing|cleared|improvement|improved)",
        r"(?:nearly|almost|largely|mostly|not (?:completely|fully|entirely)) (?:resolved|cleared)",
        r"not only",
        r"gram negative",
        r"age indeterminate",
    ),
    # uncertainty acting backwards: "pneumonia cannot be excluded"
    "uncertain_post": (
        r"(?:cannot|can not|can't|could not|may not) (?:be )?(?:entirely |completely |totally |definitively |"
        r"fully |definitely )?(?:excluded|ruled out)",
        r"(?:is|are) not (?:entirely |completely |definitely )?(?:excluded|ruled out)",
        r"not (?:entirely |completely |definitely )?(?:excluded|ruled out)",
        r"(?:is|are|was|were) (?:also )?(?:possible|possibly present|suspected|questioned|questionable|likely|"
        r"probable|favored|favoured|considered|not excluded|a consideration|in the differential)"
        # "cardiomegaly is likely accentuated by technique" hedges the size, not the finding
        r"(?! (?:accentuated|exaggerated|magnified|due|related|secondary|caused|projectional|technical))",
        r"(?:may|might|could) (?:also )?(?:be )?(?:present|exist|seen|noted|coexist|be present|be superimposed)",
        r"(?:difficult|hard|impossible) to (?:exclude|rule out)",
        r"(?:not|less) (?:well|clearly|fully) (?:seen|visualized|evaluated|assessed|imaged|excluded)",
        r"would be (?:difficult|hard) to exclude",
    ),
    "uncertain_pre": (
        r"(?:not clear|unclear|uncertain) (?:whether|if)",
        r"(?:cannot|can not|can't|could not|unable to) (?:entirely |completely |definitely )?(?:exclude|rule out)",
        r"(?:difficult|hard|impossible) to (?:exclude|rule out|distinguish from)",
        r"(?:may|might|could|can) (?:also )?(?:represent|reflect|be|indicate|relate to|correspond to|"
        r"signify|denote|include|suggest|be due to|be related to)",
        r"(?:may|might|could)",
        r"possible|possibly|probable|probably|likely|presumed|presumably|perhaps|potential|potentially",
        r"questionable|questionably|question of|query",
        r"suspect(?:ed)?|suspicion (?:for|of)",
        r"raising concern for|raises concern for|concern (?:for|of)",
        r"suggest(?:s|ing|ive of|ed)?",
        r"differential (?:diagnosis )?(?:includes?|considerations? includes?)",
        r"equivocal|borderline|indeterminate|uncertain|vague",
        r"rule out|r/o|to exclude|evaluate for|assess for|evaluation for",
    ),
    # uncertainty that links an observation to a diagnosis ("opacity concerning for pneumonia"); after a
    # negated mention it carries the negation on ("no opacity concerning for pneumonia")
    "uncertain_link": (
        r"(?:to|that would|which would|that might) (?:suggest|indicate|represent)",
        r"(?:concerning|suspicious|worrisome|worrying) (?:for|of)",
    ),
    # "atelectasis versus pneumonia", "pneumonia?": the nearest mention on each side
    "uncertain_both": (r"versus|vs\.?|or less likely",),
    "question_pre": (r"\?(?= ?\w)",),
    "question_post": (r"\?(?=\n|$)",),
    # negation acting backwards: "pneumothorax is not seen", "effusion has resolved"
    "negative_post": (
        r"(?:no longer|not) (?:(?:definitely|clearly|convincingly) )?"
        r"(?:seen|identified|visualized|visible|appreciated|evident|present|demonstrated|detected|noted|"
        r"apparent|observed|found)",
        r"(?:completely |fully |entirely )?(?:resolved|removed|cleared|withdrawn|"
        r"discontinued|excluded|ruled out)",
        r"(?:is|are|was|were) (?:now )?absent",
        r"removal(?! of)",  # "status post chest tube removal"
    ),
    # negation acting forwards: "no", "without", "resolution of"
    "negative_pre": (
        r"no longer",
        r"no|not|without|neither|nor|never",
        r"negative for|free of|clear of|absence of|absent|lack of|rather than|instead of",
        r"(?:interval |complete |total )?(?:resolution|removal|clearance|clearing) of(?: the)?",
    ),
    # where a negation or an uncertainty stops (the start of another clause)
    "terminator": (
        r"but|however|although|though|except(?: for)?|with the exception of|apart from|aside from|other than|"
        r"besides|whereas|while|yet|which|since|nevertheless|otherwise",
        r"(?:and|with) (?=(?:the|there|a|an|new|interval|persistent|stable|unchanged|increased|decreased|"
        r"worsening|worsened|improved|improving|residual|mild|moderate|small|large|severe|moderately|mildly|"
        r"minimal|trace|tiny|bilateral|right|left)\b)",
    ),
    # punctuation that ends a clause (no word boundaries around it)
    "terminator_punct": (r"\n|;|:|, (?=(?:the|there|it|this|these)\b)",),
}
