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
    "glacier": (
        "A glacier is a huge river of ice that moves very slowly down a valley. As the climate warms, "
        "many glaciers are shrinking and their meltwater raises the level of the sea.",
        ["frozen rivers melting because of warming", "slow moving ice in mountain valleys"],
    ),
    "pasta": (
        "Fresh pasta needs only flour and eggs. Roll the dough very thin, cut it into ribbons, "
        "and boil it in salted water for just two or three minutes.",
        ["making noodles by hand with eggs", "how long to cook homemade ribbons of dough"],
    ),
    "knife": (
        "Hold the kitchen knife firmly and curl the fingers of your other hand like a claw. "
        "A sharp blade is safer than a dull one because it does not slip.",
        ["chopping vegetables safely", "why a blunt blade is dangerous"],
    ),
    "moon": (
        "In nineteen sixty nine, Neil Armstrong became the first person to walk on the moon. "
        "The Apollo eleven crew collected rocks and returned safely to earth.",
        ["the first human steps on the lunar surface", "what did Armstrong do in sixty nine"],
    ),
    "mars": (
        "The rover called Perseverance landed on Mars to search for signs of ancient life. "
        "It drills into rocks and stores the samples in small tubes.",
        ["a robot looking for life on the red planet", "collecting rock cores on another world"],
    ),
    "blackhole": (
        "A black hole forms when a giant star collapses. Its gravity is so strong "
        "that not even light can escape once it crosses the event horizon.",
        ["where gravity traps even light", "what is left after a massive star collapses"],
    ),
    "knitting": (
        "Knitting turns a single long strand of wool into fabric using two needles. "
        "Beginners usually start with a simple scarf made from rows of plain stitches.",
        ["making a scarf with yarn and needles", "an easy first project for beginners with wool"],
    ),
    "houseplants": (
        "Most houseplants die from too much water rather than too little. Let the soil dry out "
        "between waterings and keep them near a bright window.",
        ["caring for indoor greenery", "why overwatering kills potted plants"],
    ),
    "smokealarm": (
        "Test the smoke alarm in every room once a month by pressing its button. "
        "Replace the battery every year so the family is warned of a fire at night.",
        ["checking the fire detector at home", "how often to change the detector battery"],
    ),
    "sailing": (
        "A sailboat cannot sail straight into the wind, so sailors zigzag back and forth. "
        "This technique is called tacking, and it lets the boat move upwind.",
        ["how boats travel against the wind", "zigzagging on the water"],
    ),
    "train": (
        "The night train leaves the capital at ten and arrives by the coast at dawn. "
        "Passengers sleep in narrow bunks while the carriages rock gently along the tracks.",
        ["sleeping on an overnight railway journey", "bunks on a rail trip to the seaside"],
    ),
    "zanzibar": (
        "Zanzibar is an island off the coast of Tanzania, famous for cloves, nutmeg and cinnamon. "
        "Its old stone town has narrow streets and carved wooden doors.",
        ["the spice island in east africa", "Zanzibar"],
    ),
    # hard negatives of the topics above, placed in other themes' videos
    "wasps": (
        "Wasps build paper nests from chewed wood. Unlike bees they make no honey, and a wasp can sting many times.",
        ["insects that build nests out of chewed wood", "stinging insects that make nothing sweet"],
    ),
    "earthquake": (
        "An earthquake happens when two plates of the crust suddenly slip past each other. "
        "The shaking can topple buildings far away from the fault.",
        ["ground shaking when plates slip", "why buildings fall during tremors"],
    ),
    "tea": (
        "Green and black tea come from the leaves of the same plant. Black tea leaves are dried and oxidized, "
        "which makes them darker and stronger.",
        ["the leaf drink that comes in green and black", "why some brews are darker than others"],
    ),
    "pizza": (
        "Pizza dough is stretched by hand, topped with tomato sauce and cheese, and baked very quickly in a wood fired oven.",
        ["a flat dough with tomato and cheese", "baking in a wood burning oven"],
    ),
    "jupiter": (
        "Jupiter is the largest planet in the solar system. Its great red spot is a storm wider than the whole earth.",
        ["the biggest planet and its giant storm", "a red spot larger than our world"],
    ),
    "station": (
        "Astronauts on the space station circle the earth every ninety minutes, so they see sixteen sunrises every day.",
        ["how many sunrises do astronauts see in orbit", "living on an outpost that circles the planet"],
    ),
    "piano": (
        "A piano has eighty eight keys. Each key moves a small hammer that strikes a string inside the wooden case.",
        ["an instrument where hammers hit strings", "how many keys the keyboard instrument has"],
    ),
    "marathon": (
        "Marathon runners train for months, slowly increasing their distance each week "
        "so their legs can handle forty two kilometres.",
        ["preparing for a long distance race", "building up weekly mileage on foot"],
    ),
    "laundry": (
        "Wash dark and light clothes separately, and use cold water so the colours do not fade or run.",
        ["sorting clothes before washing them", "keeping colours from fading in the wash"],
    ),
    "dreams": (
        "Most dreams happen during rapid eye movement sleep. People forget nearly all of them within minutes of waking up.",
        ["why we forget what we saw while asleep", "the sleep stage with rapid eye movements"],
    ),
    "airport": (
        "At the airport, arrive two hours early, check in your suitcase, and pass through security before walking to the gate.",
        ["what to do before a flight", "checking bags and going through security"],
    ),
    "camping": (
        "When camping, pitch the tent on flat ground away from the river, and hang your food high so animals cannot reach it.",
        ["where to put up a tent", "keeping food away from wild animals"],
    ),
}

#: Dev-set videos: each has one theme and narrates its topics, plus one hard negative of another
#: theme's topic (wasps among kitchen topics, Jupiter among hobbies...), so neither the video
#: prior nor any single modality is enough on its own.
THEMES = {
    "nature": ["volcano", "rainforest", "bees", "glacier", "earthquake", "camping"],
    "kitchen": ["bread", "coffee", "pasta", "knife", "tea", "wasps"],
    "space": ["saturn", "moon", "mars", "blackhole", "station", "dreams"],
    "hobbies": ["chess", "guitar", "bicycle", "knitting", "piano", "jupiter"],
    "home": ["recycling", "sleep", "houseplants", "smokealarm", "laundry", "pizza"],
    "travel": ["lighthouse", "sailing", "train", "zanzibar", "airport", "marathon"],
}
