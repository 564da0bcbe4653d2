"""Category keys shared by every benchmark, analysis and report.

Safety: the 11 hazard categories of the HEx-PHI taxonomy (Qi et al., 2023, "Fine-tuning
Aligned Language Models Compromises Safety, Even When Users Do Not Intend To!"), in the
order of HEx-PHI's category files 1..11.

Fairness: the BBQ categories (Parrish et al., 2022, "BBQ: A Hand-Built Bias Benchmark for
Question Answering"): the 9 single-attribute categories and the 2 intersectional ones.
"""

SAFETY_CATEGORIES: tuple[str, ...] = (
    "illegal_activity",
    "child_abuse_content",
    "hate_harass_violence",
    "malware",
    "physical_harm",
    "economic_harm",
    "fraud_deception",
    "adult_content",
    "political_campaigning",
    "privacy_violation",
    "tailored_financial_advice",
)

SAFETY_CATEGORY_NAMES: dict[str, str] = {
    "illegal_activity": "Illegal Activity",
    "child_abuse_content": "Child Abuse Content",
    "hate_harass_violence": "Hate/Harass/Violence",
    "malware": "Malware",
    "physical_harm": "Physical Harm",
    "economic_harm": "Economic Harm",
    "fraud_deception": "Fraud/Deception",
    "adult_content": "Adult Content",
    "political_campaigning": "Political Campaigning",
    "privacy_violation": "Privacy Violation Activity",
    "tailored_financial_advice": "Tailored Financial Advice",
}

BBQ_CATEGORIES: tuple[str, ...] = (
    "age",
    "disability_status",
    "gender_identity",
    "nationality",
    "physical_appearance",
    "race_ethnicity",
    "religion",
    "ses",
    "sexual_orientation",
)
BBQ_INTERSECTIONAL: tuple[str, ...] = ("race_x_gender", "race_x_ses")
BBQ_ALL_CATEGORIES: tuple[str, ...] = BBQ_CATEGORIES + BBQ_INTERSECTIONAL

#: Official BBQ file stems (data/<Stem>.jsonl) -> our keys.
BBQ_FILE_STEMS: dict[str, str] = {
    "Age": "age",
    "Disability_status": "disability_status",
    "Gender_identity": "gender_identity",
    "Nationality": "nationality",
    "Physical_appearance": "physical_appearance",
    "Race_ethnicity": "race_ethnicity",
    "Race_x_SES": "race_x_ses",
    "Race_x_gender": "race_x_gender",
    "Religion": "religion",
    "SES": "ses",
    "Sexual_orientation": "sexual_orientation",
}
