"""Topic bank for generated narrated videos: each topic has a narration (spoken by espeak-ng) and
queries written as paraphrases of it, never copies, so retrieval is tested on meaning."""

TOPICS = {
    "volcano": (
        "Deep under the ground, molten rock called magma slowly rises through cracks in the crust. "
        "When the pressure becomes too great, the mountain erupts and throws lava and ash high into the sky.",
        ["how does lava burst out of a mountain", "what happens when pressure builds under the crust"],
    ),
    "bread": (
        "To bake bread, mix flour, water, salt and yeast into a dough. Knead it for ten minutes, "
        "let it rise for an hour, then put it in a hot oven until the crust turns golden.",
        ["recipe for making a loaf at home", "kneading dough and letting it prove"],
    ),
    "bees": (
        "Honeybees live in large colonies ruled by a single queen. Worker bees fly from flower to flower "
        "collecting nectar, and back in the hive they turn it into honey.",
        ["insects that produce something sweet", "the queen of the hive and her workers"],
    ),
    "bicycle": (
        "To fix a flat bicycle tire, take the wheel off, pull out the inner tube and find the puncture. "
        "Cover the hole with a patch and pump the tube up again.",
        ["repairing a punctured bike wheel", "patching an inner tube"],
    ),
    "saturn": (
        "Saturn is the sixth planet from the sun. Its famous rings are made of ice and rock, "
        "and it has more than one hundred moons orbiting around it.",
        ["the gas giant with rings", "which planet has over a hundred satellites"],
    ),
    "coffee": (
        "Coffee beans are the roasted seeds of a cherry that grows on shrubs in the tropics. "
        "Grinding the beans and pouring hot water over them makes a drink full of caffeine.",
        ["how a morning caffeine drink is brewed", "roasted seeds from tropical cherries"],
    ),
    "chess": (
        "In chess, each player starts with sixteen pieces. The goal is to trap the opposing king "
        "so that it cannot escape, which is called checkmate.",
        ["the board game where you trap a king", "how a game of checkmate is won"],
    ),
    "rainforest": (
        "Tropical rainforests receive heavy rain almost every day. They cover a small part of the earth "
        "but are home to more than half of all plant and animal species.",
        ["jungle with enormous biodiversity", "wet forests near the equator"],
    ),
    "guitar": (
        "A guitar usually has six strings. Pressing a string against a fret shortens it, "
        "and plucking it then plays a higher note.",
        ["playing notes on a stringed instrument", "how frets change the pitch"],
    ),
    "recycling": (
        "Recycling turns old bottles, cans and paper into new products. Sorting waste at home "
        "keeps plastic out of landfills and saves energy and raw materials.",
        ["reusing plastic and paper waste", "why we separate our rubbish"],
    ),
    "sleep": (
        "Adults need about eight hours of sleep each night. During deep sleep the brain stores memories "
        "and the body repairs its muscles.",
        ["why rest at night matters for memory", "how many hours should grown ups sleep"],
    ),
    "lighthouse": (
        "A lighthouse stands on the rocky coast and shines a bright rotating lamp at night, "
        "so that ships at sea can avoid the dangerous shore.",
        ["a tower warning sailors of the coast", "the rotating lamp that guides boats"],
    ),
}
