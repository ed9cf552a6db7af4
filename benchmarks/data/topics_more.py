"""More narrated topics for the grown dev set: themes that neighbour the first six (baking beside
the kitchen, astronomy tools beside space, ...), so a query's wrong answers include close ones.
Each topic: a narration (spoken by espeak-ng) and two queries written as paraphrases of it."""

TOPICS_MORE = {
    # baking: neighbours the kitchen video's bread and coffee
    "sourdough": (
        "A sourdough starter is a jar of flour and water that wild yeast has colonised. "
        "Feed it every day and it bubbles, and a spoonful of it makes the loaf rise without any packet yeast.",
        ["keeping a culture of wild yeast alive", "leavening a loaf without shop bought yeast"],
    ),
    "cookies": (
        "Cream the butter and sugar until pale, beat in an egg, then fold in flour and chocolate chips. "
        "Spoon small balls onto a tray and bake them for twelve minutes.",
        ["making chocolate chip biscuits", "how long to bake small rounds of dough"],
    ),
    "meringue": (
        "Whisk egg whites in a spotless bowl until they hold stiff peaks, then add sugar one spoon at a time. "
        "Dry the glossy mixture in a very low oven for two hours.",
        ["beating whites until they stand up", "a dessert dried slowly in a cool oven"],
    ),
    "pancakes": (
        "For thin pancakes, whisk flour, milk and eggs into a runny batter and let it rest. "
        "Pour a ladle into a hot buttered pan, tilt it to spread, and flip after one minute.",
        ["thin crepes for breakfast", "when to turn the batter over in the pan"],
    ),
    "espresso": (
        "An espresso machine forces very hot water through finely ground, tightly packed coffee in about thirty seconds. "
        "The result is a small strong shot topped with a golden foam.",
        ["pressurised brewing of a short strong drink", "why the little cup has a layer of crema"],
    ),
    # astronomy tools: neighbours the space video
    "telescope": (
        "A reflecting telescope gathers light with a large curved mirror instead of a lens. "
        "The wider the mirror, the fainter the galaxies and nebulae it can reveal.",
        ["instruments that collect starlight with a dish shaped mirror", "why a bigger aperture shows dimmer objects"],
    ),
    "eclipse": (
        "During a total solar eclipse the moon passes exactly between the earth and the sun. "
        "For a few minutes the sky goes dark and the pale outer atmosphere of the sun appears.",
        ["when daytime briefly turns to night", "seeing the solar corona with the naked eye"],
    ),
    "comet": (
        "A comet is a lump of ice and dust from the outer solar system. "
        "As it swings close to the sun the ice boils away and forms a glowing tail millions of kilometres long.",
        ["dirty snowballs with long glowing trails", "why some visitors from deep space grow a tail"],
    ),
    "satellite": (
        "Weather satellites circle the planet and photograph clouds, storms and sea temperatures every few minutes. "
        "Forecasters feed those pictures into computer models of the atmosphere.",
        ["spacecraft that watch hurricanes from orbit", "where forecasters get their cloud images"],
    ),
    "meteor": (
        "A shooting star is a grain of space dust burning up as it hits the upper atmosphere at great speed. "
        "In August the earth crosses a trail of such dust and dozens streak across the sky each hour.",
        ["bright streaks on a summer night", "tiny particles burning high above us"],
    ),
    # music: neighbours the hobbies video's guitar and piano
    "violin": (
        "A violin has four strings tuned in fifths and is played with a bow strung with horse hair. "
        "Rosin on the hair lets it grip the strings and make them sing.",
        ["the smallest bowed string instrument", "why players rub resin on the bow"],
    ),
    "drums": (
        "A drum kit combines a bass drum played with a foot pedal, a snare, toms and cymbals. "
        "The drummer keeps the tempo that the whole band follows.",
        ["percussion set played with sticks and a pedal", "who keeps the beat in a band"],
    ),
    "choir": (
        "A choir splits into sopranos, altos, tenors and basses, each singing its own line. "
        "Together the four parts make the harmony.",
        ["groups of singers in four voice parts", "how many lines blend into harmony"],
    ),
    "vinyl": (
        "A vinyl record stores sound as a single spiral groove whose tiny wiggles match the waveform. "
        "A diamond stylus rides the groove and turns the wiggles back into music.",
        ["how an old turntable reads songs", "a needle tracing a spiral track"],
    ),
    "metronome": (
        "A metronome clicks at a steady number of beats per minute. "
        "Practising slowly with it and then raising the speed builds clean, even playing.",
        ["a device that ticks to keep time", "practice tool for a steady tempo"],
    ),
    # gardening: neighbours the home video's houseplants
    "compost": (
        "Pile vegetable peelings, grass cuttings and dry leaves in a bin and turn them every few weeks. "
        "Worms and bacteria break everything down into dark crumbly soil.",
        ["turning kitchen scraps into rich earth", "what rots food waste in a garden heap"],
    ),
    "tomatoes": (
        "Tomato plants need a sunny spot, a tall cane to climb and water at the roots every day in summer. "
        "Pinch out the side shoots so the plant puts its energy into fruit.",
        ["growing red fruit on canes", "removing side shoots for a bigger crop"],
    ),
    "pruning": (
        "Prune roses in late winter, cutting each stem just above an outward facing bud. "
        "Remove dead and crossing branches so air can move through the bush.",
        ["when to cut back a flowering shrub", "trimming stems above a bud"],
    ),
    "lawn": (
        "Mow the lawn often but never take off more than a third of the blade at once. "
        "In a dry spell, leave the grass longer so it shades its own roots.",
        ["how short to cut the grass", "caring for turf during a drought"],
    ),
    "birds": (
        "Hang a feeder with seeds and fat balls in winter and keep it clean. "
        "Robins, tits and finches will visit every morning when food is scarce.",
        ["helping garden songbirds through the cold months", "which small birds come to a seed feeder"],
    ),
    # oceans: neighbours the travel video's sailing and lighthouse
    "coral": (
        "Coral reefs are built by tiny animals that grow limestone skeletons in warm shallow seas. "
        "When the water gets too hot they expel their algae and turn white.",
        ["why reefs bleach in a heatwave", "colonies of small creatures building rock underwater"],
    ),
    "tides": (
        "Tides rise and fall twice a day because the moon's gravity pulls the oceans into a bulge. "
        "The biggest spring tides come at the full and new moon.",
        ["why the sea level changes through the day", "the moon pulling on the water"],
    ),
    "whales": (
        "Humpback whales travel thousands of kilometres each year between cold feeding waters and warm breeding grounds. "
        "The males sing long songs that carry for miles underwater.",
        ["huge mammals that migrate and sing", "the longest journey of ocean giants"],
    ),
    "submarine": (
        "A submarine dives by flooding its ballast tanks with seawater and surfaces by blowing them full of air. "
        "Sonar lets it find its way in the dark deep water.",
        ["how an underwater boat goes up and down", "navigating below the waves by sound"],
    ),
    "surfing": (
        "Surfers paddle out beyond the breaking waves, wait for a swell, then paddle hard and pop up to their feet. "
        "Reading the sets of waves takes years of practice.",
        ["riding waves on a board", "standing up as the swell arrives"],
    ),
    # health: neighbours the home video's sleep and the travel video's marathon
    "vaccines": (
        "A vaccine shows the immune system a harmless piece of a germ. "
        "The body makes antibodies and remembers them, so a real infection later is fought off quickly.",
        ["training the body's defences in advance", "why an injection protects against disease"],
    ),
    "stretching": (
        "Warm up with five minutes of light jogging before stretching, and hold each stretch for thirty seconds without bouncing. "
        "Cold muscles tear more easily.",
        ["how long to hold a muscle lengthening pose", "loosening up safely before exercise"],
    ),
    "hydration": (
        "Adults lose about two litres of water a day through breath, sweat and urine. "
        "Dark yellow urine and headaches are early signs that you need to drink more.",
        ["signs you are not drinking enough", "how much fluid the body loses daily"],
    ),
    "dentist": (
        "Brush your teeth twice a day for two minutes with a fluoride toothpaste and floss once a day. "
        "Sugar feeds the bacteria that make acid and cause cavities.",
        ["keeping teeth free of decay", "why sweets lead to holes in molars"],
    ),
    "posture": (
        "When working at a desk, keep the screen at eye level and your feet flat on the floor. "
        "Stand up and walk around every half hour to spare your back.",
        ["setting up a chair and monitor to avoid back pain", "how often to get up from the office desk"],
    ),
    # history: new ground
    "pyramids": (
        "The great pyramid of Giza was built about four and a half thousand years ago as a tomb for a pharaoh. "
        "Workers hauled more than two million stone blocks up ramps.",
        ["ancient Egyptian royal tombs", "how millions of limestone blocks were raised"],
    ),
    "printing": (
        "Around fourteen fifty, Gutenberg built a press with movable metal letters. "
        "Books that took scribes months to copy could now be printed in days.",
        ["the invention that made books cheap", "movable type in the fifteenth century"],
    ),
    "romanroads": (
        "Roman engineers built straight roads of layered gravel and stone across their empire. "
        "Legions could march twenty miles a day on them, and some are still used.",
        ["ancient highways for marching armies", "paved routes that lasted two thousand years"],
    ),
    "vikings": (
        "Viking longships were narrow, light and shallow, so they could cross the open sea and also row far up rivers. "
        "They reached Iceland, Greenland and North America.",
        ["Norse seafarers and their boats", "who sailed to the new world before Columbus"],
    ),
    "moonlanding": (
        "In nineteen sixty nine Apollo eleven landed on the moon and Neil Armstrong stepped onto its dusty surface. "
        "Half a billion people watched on television.",
        ["the first person to walk on another world", "a broadcast watched by millions in sixty nine"],
    ),
    # technology: new ground
    "battery": (
        "A lithium ion battery moves lithium ions from one electrode to the other as it charges and back as it discharges. "
        "Heat and full charges wear it out faster.",
        ["why a phone cell loses capacity over the years", "ions shuttling between electrodes"],
    ),
    "wifi": (
        "Wireless routers send data on radio waves at two point four and five gigahertz. "
        "Walls and microwaves weaken the signal, so put the router high and central.",
        ["where to place the internet box at home", "radio frequencies used for home networks"],
    ),
    "password": (
        "A strong password is long and unique to each site. "
        "A password manager remembers them for you, and a second factor such as a code on your phone stops most break ins.",
        ["keeping online accounts safe", "why use a different secret login everywhere"],
    ),
    "solarpanel": (
        "Solar panels are made of silicon cells that turn sunlight directly into electricity. "
        "An inverter changes their direct current into the alternating current used at home.",
        ["making power from sunshine on the roof", "what converts panel output for household sockets"],
    ),
    "3dprinter": (
        "A three dimensional printer melts a plastic filament and lays it down one thin layer at a time. "
        "A small part can take several hours to print.",
        ["building objects layer by layer from molten plastic", "why printing a small part is slow"],
    ),
    # animals: neighbours the nature video's bees
    "ants": (
        "Leafcutter ants carry pieces of leaf back to the nest, but they do not eat them. "
        "They grow a fungus on the chewed leaves and eat the fungus instead.",
        ["insects that farm their own food", "what happens to the leaves carried underground"],
    ),
    "owls": (
        "Owls hunt at night. Soft fringed feathers make their flight silent, "
        "and their ears are placed unevenly so they can pinpoint a mouse by sound alone.",
        ["birds that hunt silently in the dark", "locating prey just by listening"],
    ),
    "octopus": (
        "An octopus has three hearts, blue blood and eight arms lined with suckers that can taste. "
        "It changes colour in a fraction of a second to hide.",
        ["a sea creature with several hearts", "camouflage by changing skin colour quickly"],
    ),
    "penguins": (
        "Emperor penguins breed in the Antarctic winter. "
        "The male balances the egg on his feet for two months without eating while the female feeds at sea.",
        ["fathers that keep the egg warm through the polar winter", "flightless birds nesting on ice"],
    ),
    "wolves": (
        "Wolves live in family packs led by a breeding pair. "
        "They howl to gather the pack and to warn other packs away from their territory.",
        ["why wild dogs howl at night", "how a pack of predators is organised"],
    ),
    # city: neighbours the travel video's train
    "subway": (
        "The underground railway runs trains every two minutes at rush hour. "
        "Stand on the right of the escalator and let passengers off before you board.",
        ["etiquette on the metro", "how often trains come at busy times"],
    ),
    "recycling2": (
        "Glass bottles can be melted and remade endlessly without losing quality. "
        "Rinse them, remove the lids, and sort clear from coloured glass.",
        ["reusing jars and bottles", "separating clear and green glass"],
    ),
    "traffic": (
        "Traffic lights at busy junctions are timed by sensors buried in the road that count waiting cars. "
        "A green wave lets a driver at the right speed hit every light on green.",
        ["how signals know cars are waiting", "catching every light on green"],
    ),
    "skyscraper": (
        "Tall towers stand on deep piles driven down to bedrock and a stiff steel or concrete core. "
        "Near the top, a heavy swinging weight damps the sway in strong wind.",
        ["why very tall buildings do not topple in storms", "foundations that reach solid rock"],
    ),
    "bikelane": (
        "Separated cycle lanes with a kerb between bikes and cars make far more people willing to ride to work. "
        "Painted lines alone protect much less.",
        ["getting more commuters onto two wheels", "protected lanes versus painted lines"],
    ),
    # weather: neighbours the nature video's glacier and earthquake
    "rainbow": (
        "A rainbow appears when sunlight enters falling raindrops, bends and reflects back out, splitting into colours. "
        "You only see one with the sun behind you.",
        ["why colours arc across the sky after rain", "where the sun must be to see the spectrum"],
    ),
    "lightning": (
        "Lightning is a giant spark between charged clouds and the ground, hotter than the surface of the sun. "
        "Count the seconds to the thunder and divide by three to get the distance in kilometres.",
        ["how far away a storm is", "electric discharges during thunderstorms"],
    ),
    "fog": (
        "Fog forms on clear calm nights when the ground cools and the air above it chills to its dew point. "
        "It usually lifts once the morning sun warms the valley.",
        ["why mist fills the valley at dawn", "cloud sitting on the ground"],
    ),
    "hurricane": (
        "Hurricanes draw their energy from warm ocean water above twenty six degrees. "
        "They weaken fast once they move over land and lose that supply.",
        ["where tropical cyclones get their power", "why storms fade after landfall"],
    ),
    "snowflake": (
        "Every snowflake grows from a speck of dust as water vapour freezes onto it in six sided patterns. "
        "Temperature and humidity decide whether it becomes a plate, a needle or a star.",
        ["why ice crystals have six points", "what shapes a flake as it falls"],
    ),
    # sport: neighbours the travel video's marathon
    "swimming": (
        "In front crawl, keep the body flat, breathe to the side every third stroke and kick from the hips. "
        "Most of the speed comes from the arms pulling underwater.",
        ["freestyle technique in the pool", "where the speed comes from in the water"],
    ),
    "tennis": (
        "A tennis serve starts with a high toss slightly in front of you. "
        "Reach up, snap the wrist and hit the ball at the top of your stretch.",
        ["starting a point on the court", "throwing the ball up before striking it"],
    ),
    "climbing": (
        "Rock climbers tie into a rope that runs through anchors on the wall, held by a partner below. "
        "If the climber slips, the belayer locks the rope and catches the fall.",
        ["how a partner stops a fall on the crag", "roped ascents of cliffs"],
    ),
    "cyclingrace": (
        "In a long road race the riders shelter in a tight group called the peloton, "
        "because the riders behind save almost a third of their effort by staying out of the wind.",
        ["why racers ride in a pack", "saving energy in the slipstream"],
    ),
    "yoga": (
        "Yoga links slow breathing with held poses such as the downward dog and the warrior. "
        "Regular practice improves balance and flexibility.",
        ["breathing with held poses", "stretching practice that improves balance"],
    ),
    # money: new ground
    "budget": (
        "A simple budget splits take home pay into needs, wants and savings. "
        "Writing down every purchase for one month shows where the money really goes.",
        ["planning monthly spending", "tracking where your salary ends up"],
    ),
    "interest": (
        "Compound interest pays interest on the interest already earned. "
        "Saved early, a small monthly sum grows into a large one over thirty years.",
        ["why saving young pays off", "earning returns on earlier returns"],
    ),
    "mortgage": (
        "A mortgage is a loan to buy a home, repaid monthly over twenty five years or so. "
        "A bigger deposit usually means a lower interest rate.",
        ["borrowing to buy a house", "what a larger down payment gets you"],
    ),
    "inflation": (
        "Inflation means prices rise over time, so the same note buys less each year. "
        "Central banks raise interest rates to slow it down.",
        ["why the weekly shop costs more than it used to", "what banks do when prices climb"],
    ),
    "stocks": (
        "Buying a share makes you a part owner of a company. "
        "Spreading money across many companies in an index fund lowers the risk of any single one failing.",
        ["owning a slice of a business", "why a broad fund is less risky"],
    ),
    # language and school: new ground
    "grammar": (
        "An adverb describes a verb, telling us how, when or where something happens. "
        "Many of them end in l y, such as quickly and quietly.",
        ["words that modify actions", "parts of speech ending in l y"],
    ),
    "fractions": (
        "To add two fractions, first give them the same bottom number. "
        "One half plus one third becomes three sixths plus two sixths, which is five sixths.",
        ["adding parts of a whole", "finding a common denominator"],
    ),
    "photosynthesis": (
        "Plants take in carbon dioxide through their leaves and water through their roots. "
        "Using the energy of sunlight they make sugar and give off oxygen.",
        ["how leaves make food from light", "where the oxygen we breathe comes from"],
    ),
    "volume": (
        "To find the volume of a box, multiply its length by its width by its height. "
        "A box two by three by four centimetres holds twenty four cubic centimetres.",
        ["working out how much a container holds", "multiplying the three sides of a cuboid"],
    ),
    "spelling": (
        "A useful rule is i before e except after c, as in believe and receive. "
        "English has many exceptions, such as weird and science.",
        ["a rhyme for writing words correctly", "exceptions to a common spelling rule"],
    ),
    # crafts: neighbours the hobbies video's knitting
    "pottery": (
        "On the potter's wheel, centre the clay first by pressing it with wet hands as it spins. "
        "Then open the middle with your thumbs and pull the walls up slowly.",
        ["throwing a bowl on a wheel", "shaping spinning clay"],
    ),
    "sewing": (
        "To sew on a button, pass the needle through the holes several times, "
        "then wrap the thread around the stitches underneath to make a shank and knot it at the back.",
        ["reattaching a fastener to a shirt", "basic needle and thread repair"],
    ),
    "woodwork": (
        "Always cut wood along a pencil line on the waste side and let the saw do the work. "
        "Sand with the grain, from coarse paper to fine.",
        ["sawing a plank accurately", "smoothing timber before varnish"],
    ),
    "origami": (
        "Origami folds a single square of paper into a shape without cuts or glue. "
        "The crane starts from a folded square base and takes about twenty folds.",
        ["Japanese paper folding", "making a bird from one sheet"],
    ),
    "painting": (
        "With watercolours, work from light to dark, because pale washes cannot cover darker paint. "
        "Leave the white of the paper for the brightest highlights.",
        ["order of layers in a watercolour", "keeping highlights white on paper"],
    ),
    # cars: neighbours the hobbies video's bicycle
    "tyres": (
        "Check the car tyre pressure once a month when the tyres are cold, using the figure inside the driver's door. "
        "Under inflated tyres waste fuel and wear out at the edges.",
        ["how often to check the air in car wheels", "why soft tyres waste petrol"],
    ),
    "electriccar": (
        "An electric car recovers energy when it slows down, using the motor as a generator. "
        "This regenerative braking puts charge back into the battery.",
        ["how battery vehicles reuse braking energy", "the motor acting as a generator"],
    ),
    "oilchange": (
        "Engine oil lubricates the moving parts and carries away heat. "
        "Check the level on the dipstick with the engine cold and change it about once a year.",
        ["checking the level with a dipstick", "why an engine needs fresh lubricant"],
    ),
    "parking": (
        "To parallel park, pull up beside the car in front, reverse until your rear wheel lines up with its bumper, "
        "then steer hard towards the kerb.",
        ["reversing into a space between two cars", "lining up beside the kerb"],
    ),
    "jumpstart": (
        "To jump start a car, connect red to the dead battery's plus terminal and then to the good one, "
        "then black to the good battery and to bare metal on the dead car.",
        ["starting a car with a flat battery", "the order to attach booster cables"],
    ),
}

#: Grown dev set: one video per theme, five topics each. Each theme neighbours one of the first six
#: (baking and coffee beside the kitchen; astronomy tools beside space; ...) so the right video's
#: neighbours are close in meaning; some videos also hold a silent scene between topics.
THEMES_MORE = {
    "baking": ["sourdough", "cookies", "meringue", "pancakes", "espresso"],
    "astronomy": ["telescope", "eclipse", "comet", "satellite", "meteor"],
    "music": ["violin", "drums", "choir", "vinyl", "metronome"],
    "garden": ["compost", "tomatoes", "pruning", "lawn", "birds"],
    "ocean": ["coral", "tides", "whales", "submarine", "surfing"],
    "health": ["vaccines", "stretching", "hydration", "dentist", "posture"],
    "history": ["pyramids", "printing", "romanroads", "vikings", "moonlanding"],
    "technology": ["battery", "wifi", "password", "solarpanel", "3dprinter"],
    "animals": ["ants", "owls", "octopus", "penguins", "wolves"],
    "city": ["subway", "recycling2", "traffic", "skyscraper", "bikelane"],
    "weather": ["rainbow", "lightning", "fog", "hurricane", "snowflake"],
    "sport": ["swimming", "tennis", "climbing", "cyclingrace", "yoga"],
    "money": ["budget", "interest", "mortgage", "inflation", "stocks"],
    "school": ["grammar", "fractions", "photosynthesis", "volume", "spelling"],
    "crafts": ["pottery", "sewing", "woodwork", "origami", "painting"],
    "cars": ["tyres", "electriccar", "oilchange", "parking", "jumpstart"],
}
