"""The paper's reported figures, in one place (Shao et al. 2025, Tables 2 and 4, section 5.4.3; REFERENCE.md).

Every table, benchmark and experiment that puts the paper's numbers beside measured ones reads them from here.
Columns are always ``COLUMNS`` (M@5 N@5 R@5 M@10 N@10 R@10).
"""

from __future__ import annotations

COLUMNS = ("MRR@5", "NDCG@5", "Recall@5", "MRR@10", "NDCG@10", "Recall@10")

#: Table 2 (Llama-2-7b, QLoRA, 4 x A800): per dataset and method, "Rank" (users whose target is among the 20
#: candidates) and "Overall" (all test users) in ``COLUMNS`` order.
TABLE2: dict[str, dict[str, dict[str, tuple[float, ...]]]] = {
    "games": {
        "NARM": {"Rank": (0.2039, 0.2424, 0.3600, 0.2248, 0.2931, 0.5168),
                 "Overall": (0.0479, 0.0576, 0.0874, 0.0541, 0.0729, 0.1351)},
        "BERT4Rec": {"Rank": (0.1765, 0.2109, 0.3160, 0.1947, 0.2551, 0.4530),
                     "Overall": (0.0422, 0.0512, 0.0788, 0.0478, 0.0649, 0.1214)},
        "SASRec": {"Rank": (0.2177, 0.2571, 0.3776, 0.2408, 0.3134, 0.5521),
                   "Overall": (0.0515, 0.0617, 0.0930, 0.0583, 0.0783, 0.1446)},
        "Llama-2": {"Rank": (0.2264, 0.2720, 0.4117, 0.2558, 0.3439, 0.6352),
                    "Overall": (0.0477, 0.0574, 0.0868, 0.0539, 0.0725, 0.1339)},
        "LRURec": {"Rank": (0.2504, 0.3009, 0.4544, 0.2811, 0.3760, 0.6879),
                   "Overall": (0.0533, 0.0640, 0.0966, 0.0598, 0.0800, 0.1463)},
        "LlamaRec": {"Rank": (0.2825, 0.3360, 0.4995, 0.3158, 0.4173, 0.7522),
                     "Overall": (0.0600, 0.0714, 0.1061, 0.0671, 0.0887, 0.1599)},
        "ULMRec": {"Rank": (0.3071, 0.3641, 0.5379, 0.3364, 0.4354, 0.7592),
                   "Overall": (0.0647, 0.0768, 0.1134, 0.0709, 0.0918, 0.1600)},
    },
    "beauty": {
        "NARM": {"Rank": (0.1961, 0.2284, 0.3263, 0.2128, 0.2689, 0.4517),
                 "Overall": (0.0289, 0.0342, 0.0503, 0.0321, 0.0420, 0.0746)},
        "BERT4Rec": {"Rank": (0.1587, 0.1901, 0.2861, 0.1743, 0.2281, 0.4043),
                     "Overall": (0.0246, 0.0298, 0.0457, 0.0276, 0.0372, 0.0686)},
        "SASRec": {"Rank": (0.2296, 0.2679, 0.3843, 0.2491, 0.3152, 0.5312),
                   "Overall": (0.0336, 0.0397, 0.0582, 0.0371, 0.0481, 0.0844)},
        "Llama-2": {"Rank": (0.2617, 0.3047, 0.4360, 0.2876, 0.3687, 0.6365),
                    "Overall": (0.0344, 0.0401, 0.0574, 0.0378, 0.0485, 0.0837)},
        "LRURec": {"Rank": (0.2944, 0.3403, 0.4801, 0.3259, 0.4168, 0.7170),
                   "Overall": (0.0376, 0.0435, 0.0614, 0.0417, 0.0533, 0.0916)},
        "LlamaRec": {"Rank": (0.3016, 0.3524, 0.5071, 0.3350, 0.4337, 0.7600),
                     "Overall": (0.0385, 0.0450, 0.0648, 0.0428, 0.0554, 0.0971)},
        "ULMRec": {"Rank": (0.3253, 0.3792, 0.5436, 0.3520, 0.4445, 0.7468),
                   "Overall": (0.0428, 0.0499, 0.0715, 0.0463, 0.0585, 0.0982)},
    },
}

#: Table 4 (Games, ranking phase): ULMRec-uid, the user index and candidates without the history (Rank).
TABLE4_UID_GAMES = (0.1843, 0.2330, 0.3822, 0.2209, 0.3233, 0.6647)

#: Section 5.4.3: seconds per test user on an A800.
SECONDS_PER_USER = {"games": {"ULMRec": 0.423, "LlamaRec": 0.417}, "beauty": {"ULMRec": 0.615, "LlamaRec": 0.636}}

#: Recall@20 of the authors' released LRURec candidates (REFERENCE.md): the retriever's coverage target.
RETRIEVER_R20 = {"beauty": 0.1316, "games": 0.2108}


def row(dataset: str, method: str, part: str = "Rank") -> dict[str, float]:
    """One Table 2 row as ``{column: value}``."""
    return dict(zip(COLUMNS, TABLE2[dataset][method][part], strict=True))
