"""The labelled set that judges the offline writer: answer sets a person could write, each read
by a human first, with the direction expected on every dimension and the decision style.

Each case answers the five questions the bank asks for its category and seed (the answers fit
those questions). `expect` has one letter per dimension, in the category's order:
H = leans high, L = leans low, . = not enough to go on (or evenly mixed). `tags` name what the
case exercises; the test checks that every kind the issue lists is covered.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    name: str
    category: str
    seed: int
    answers: tuple[str, str, str, str, str]
    expect: str
    style: str
    tags: tuple[str, ...] = ()


# fmt: off
CASES: tuple[Case, ...] = (
    # Career: Ambition, Risk tolerance, Self-knowledge, Collaboration.
    Case("career-go-getter", "career", 0, (
        "The bigger job, without a doubt. Leading a team is the next step I've been working toward for years.",
        "Worst case it doesn't work out and I come back. I'd recover, so I'd take the leap.",
        "Mine. I know myself well enough to know I'd be restless if I stayed.",
        "Dev, mostly. But it's my call in the end, I'll decide on my own.",
        "Honestly both, but mainly the challenge of building something. Definitely not just the title.",
    ), "HHHL", "decisive", ("plain",)),
    Case("career-content-stayer", "career", 1, (
        "Honestly I'm happy where I am. I don't need more than a steady job and my evenings free.",
        "How the money would work out. I can't afford to lose my savings, I need the security.",
        "A quiet day fixing a bug nobody else could find. I'm good at the careful work.",
        "I'd want to talk to my partner first and ask a couple of friends for advice.",
        "Relieved. Safe isn't a failure, and I'd still have my pension and my peace of mind.",
    ), "LLHH", "cautious", ("plain",)),
    Case("career-issue-too-safe", "career", 2, (
        "I'm worried that if I play it too safe I'll regret it later. I've spent fourteen years being sensible.",
        "Never finding out, because that would eat at me far more than failing. I'd rather take the leap.",
        "Doing work I actually love. Deep down I've always known it's the joinery.",
        "My husband and Ruth. We talked it through at dinner and Ruth surprised me, because she said go for it.",
        "Somewhere I'm proud of the work itself, not the title. I'm not chasing a bigger role at all.",
    ), "LHHH", "deliberate", ("issue",)),
    Case("career-quick-low", "career", 3, (
        "I already have it",
        "How the money would work out",
        "Different versions",
        "It mostly affects me",
        "Nothing, I just want the work",
    ), "L..L", "unclear", ("quick-replies",)),
    Case("career-hedger", "career", 4, (
        "idk, maybe the books? not sure",
        "not sure. whether I'd be good at it maybe",
        "no idea really. both, maybe",
        "dunno, probably just me",
        "maybe the work, maybe the status. can't tell",
    ), "....", "exploratory", ("hedging",)),
    Case("career-long-deliberator", "career", 5, (
        "Honestly I think I'd feel restless and a bit regretful. I've spent the whole degree telling myself I wanted to see how far I could go, and the consulting job is the obvious next step for that kind of ambition. At the same time I know sixty-hour weeks would cost me, so I've been writing down what each year would look like, because I want to understand the trade-off before I commit rather than just follow my gut.",
        "I'd want to know how the money would really work out: rent in London versus Sheffield, the loan repayments, what I could save. I've made a spreadsheet for both, because I'd rather know the numbers than guess. If the London one left me with nothing saved after two years, that would change things.",
        "My dad's voice is loud, if I'm honest, and he thinks consulting is what you're supposed to do. But when I sit with it quietly, what I want is to be somewhere I can grow, and I've noticed I'm happiest when I'm learning fast. So the voice deciding should be mine, even if it agrees with him.",
        "Usually I consult people and then decide. I'd talk to Jonah, ask my tutor for advice and listen to my parents, and then make the call myself, because in the end I'm the one doing the job.",
        "Closer, I think. In five years I'd like to be leading projects and have the kind of experience that lets me choose where I work, including coming back to Sheffield on my own terms. The London job moves me towards that faster, even though it costs more in the short run.",
    ), "H.HH", "deliberate", ("long",)),
    Case("career-german", "career", 6, (
        "Ich will mir selbst beweisen, dass ich eine Küche führen kann.",
        "Ein bisschen Erspartes reicht mir, ich bin nicht ängstlich.",
        "Ehrlich gesagt: Freiheit und gutes Essen.",
        "Mit Luis habe ich noch nicht gesprochen, das ist das Schwierigste.",
        "Die Arbeit selbst, nicht der Titel.",
    ), "....", "unclear", ("german",)),
    Case("career-contradiction", "career", 7, (
        "Only to myself. I want to prove I can still lead a team after four years at home.",
        "That I cope better than I expect. I'd take the leap again.",
        "Mostly mine, and I know what I want: work that fits around the kids.",
        "Priya and my partner. We'd decide together.",
        "Where do I want to be? Somewhere safe, to be honest. I've had enough upheaval.",
    ), "..HH", "balanced", ("contradiction",)),
    Case("career-emoji-one-word", "career", 8, (
        "\U0001f937\u200d\u2640\ufe0f\U0001f605\U0001f643",
        "Both",
        "Freedom",
        "\U0001f44d",
        "no",
    ), "....", "unclear", ("emoji", "one-word", "issue")),
    Case("career-irony-exasperation", "career", 9, (
        "Oh great, another chance to prove I can work eighty hours a week for nothing.",
        "No, that's my red line.",
        "Meetings drain me and code energises me, definitely. I've known that for years.",
        "Nobody yet. As usual it's me who has to figure it all out alone.",
        "Further away, for sure. I'm happy where I am and the startup would be a detour.",
    ), "LLHL", "decisive", ("irony", "exasperation")),

    # Ethics: Principle, Empathy, Courage, Pragmatism.
    Case("ethics-principled-speaker", "ethics", 0, (
        "Yes, without hesitation. Honesty isn't something I switch off when it's a friend.",
        "Nadia and her kids, obviously. I understand how hard her year has been.",
        "I'd regret it. I'd rather speak up and tell them directly than carry it around.",
        "Talk to Nadia first, then report it. She deserves to hear it from me before anyone else.",
        "Not at all, it's about doing the right thing whether anyone sees it or not.",
    ), "HHH.", "decisive", ("plain",)),
    Case("ethics-issue-not-brave", "ethics", 1, (
        "It depends on the situation. I'm worried that owning up would cost me the residency.",
        "A great deal",
        "I'm not brave. I usually avoid conflict because I'm scared of what it would cost me, so I'd keep quiet.",
        "Quite a lot, if it works. I'd rather find a practical way through than be a hero.",
        "No, it's a hard call. Plenty of good people would do the same.",
    ), "LHLH", "cautious", ("issue", "negation")),
    Case("ethics-issue-kind-of", "ethics", 2, (
        "No, it's a hard call. People fudge references all the time, that kind of thing happens.",
        "The facts. Not feelings, just the facts about whether he can do the job.",
        "Probably not. I'd need someone else to back me up before I said anything.",
        "Whatever works in practice: a reference that stresses his strengths and stays quiet about the rest.",
        "It's not absolute for me. It depends on the situation, and here a small bend seems fine.",
    ), "LLLH", "balanced", ("issue", "negation")),
    Case("ethics-long-principled", "ethics", 3, (
        "I'd tell them to do what's right, whatever it costs, and I'd mean it. Thirty people are counting on that bonus and I hired most of them, so I know exactly what I'm asking of them. But a clinic full of patients with cable that might not be fire-rated is not something I could live with, because if anything happened I would know I had the chance to stop it. Some things are a matter of principle.",
        "It matters a lot to me. The workers have families and some of them are struggling, and I understand why they'd be furious. But their hardship doesn't change what the cable needs.",
        "Yes, with the contractor. It's hard because they gave me my first chance, but I'll have the conversation tomorrow and tell them directly.",
        "There isn't a workable compromise on fire safety. Open the walls, check the cable, and accept the delay. Ideally the mayor moves the date.",
        "No, the rule stands. Fire rules exist because people died, and there are no exceptions when a clinic is full of patients.",
    ), "HHHL", "deliberate", ("long",)),
    Case("ethics-quick-high", "ethics", 4, (
        "Yes, without hesitation",
        "A great deal",
        "I'd accept it fully",
        "Whatever works in practice",
        "Not at all, it's about me",
    ), "HHHH", "unclear", ("quick-replies",)),
    Case("ethics-spanish", "ethics", 5, (
        "Sí, un poco. La honestidad en la ciencia es muy importante para mí.",
        "Depende. Todos tenemos presión, pero eso no cambia los datos.",
        "Normalmente digo lo que pienso, aunque me cueste.",
        "Quizás. Podría hablar con el doctor primero.",
        "La verdad. No es negociable para mí.",
    ), "....", "unclear", ("spanish",)),
    Case("ethics-negation", "ethics", 6, (
        "I don't think rules are the point here. Walter isn't breaking any law, he's just getting old.",
        "I wouldn't need to talk to anyone first. It's not about how they feel, it's about the cyclist he nearly hit.",
        "Yes, on my own if needed. I'm not going to stay quiet about this.",
        "The least harm is taking the keys, even if it's not perfect.",
        "Not much. I'm not hiding anything.",
    ), "LLHH", "balanced", ("negation",)),
    Case("ethics-hedger", "ethics", 7, (
        "Maybe? I'm not sure. A small bend, maybe, if nothing is proven yet.",
        "I guess I could ask my friend more, I don't know.",
        "Probably I'd keep my head down, I'm not sure.",
        "Something imperfect, I guess. idk.",
        "Not sure. Probably fairness to the workers, but I don't know how firm.",
    ), "..L.", "exploratory", ("hedging",)),
    Case("ethics-french", "ethics", 8, (
        "Non, la règle est la règle. Je ne vais pas tricher.",
        "Je pense à Kofi, il est mon meilleur ami et il a peur.",
        "Oui, même seule. C'est important pour moi.",
        "Pas grand-chose, un peu de fierté peut-être.",
        "Ça compte beaucoup pour moi, je ne veux pas qu'on me voie tricher.",
    ), "....", "unclear", ("french",)),
    Case("ethics-pragmatist-decisive", "ethics", 9, (
        "Yes, if it spares real harm. Rules are tools, and this is clearly a case where we should be flexible.",
        "Nadia, obviously. She's going through a lot and I care about what happens to her kids.",
        "I say it anyway. I'd rather confront it head-on than let it fester.",
        "No, results matter most. A gesture that changes nothing isn't worth much to me.",
        "It depends on the situation. Here, a quiet word and a repayment plan is the practical answer.",
    ), "LHHH", "decisive", ("plain",)),

    # Family: Responsibility, Fairness, Communication, Flexibility.
    Case("family-issue-always-me", "family", 0, (
        "Time for myself, as usual. It's always me who has to sort this out.",
        "Probably not to everyone. Marcus's parents would say it's their turn, and they'd have a point.",
        "I'm afraid to find out",
        "Yes, I've been thinking of one: Christmas Eve with Mum, Christmas Day in Norfolk.",
        "I'd feel I'd let them down. Mum would never say it, but she relies on me.",
    ), "HHLH", "balanced", ("issue", "exasperation")),
    Case("family-issue-fair-way", "family", 1, (
        "Less than they seem to expect. I've done my share, and I have my own life too.",
        "Honestly, I do not think there is a fair way to split this.",
        "Nobody would say what they mean. Claire would go quiet and Danny would get defensive.",
        "No, it needs to be settled, definitely. A trial just drags it out.",
        "It would be a relief, for sure. I can't do everything for everyone.",
    ), "L.LL", "decisive", ("issue", "negation")),
    Case("family-quick-high", "family", 2, (
        "I'd feel I'd let them down",
        "I'd be comfortable explaining",
        "There's something specific",
        "I'm open to changing most of it",
        "A lot; it's how I was raised",
    ), "HH.H", "unclear", ("quick-replies",)),
    Case("family-tired", "family", 3, (
        "I am tired, really tired. Most of the driving would fall on me, and it's my job as her mum, so I'd do it.",
        "Leo always gets less of us, and that feels unfair to him.",
        "I tend not to. I let things build up and then I cry in the car.",
        "Maybe, if we looked. We could try a mix of driving and the school bus for a term.",
        "Me, and it doesn't. I'm exhausted and nobody notices.",
    ), "HHLH", "intuitive", ("tired", "feeling")),
    Case("family-issue-idk-no-emoji-german", "family", 4, (
        "idk",
        "no",
        "\U0001f937\u200d\u2640\ufe0f\U0001f605\U0001f643",
        "Ich weiß es nicht.",
        "no",
    ), "....", "unclear", ("issue", "one-word", "emoji", "german", "hedging")),
    Case("family-long-communicator", "family", 5, (
        "It would honestly be a relief, which surprised me. My parents offered out of love, and I'm grateful, but I've realised I can't do everything they expect and still parent Ava the way Chidi and I want to. Saying not yet would protect our own life and our routines, and I think I could say it kindly.",
        "My brother had a lot more help from them when his kids were small. I want whatever we decide to be fair to both of us, so it doesn't become another thing that sits between us for years.",
        "I'd sit down with them and ask them directly. I think they'd say they want to help, but if we talk it through openly they'd also admit they're tired some days. I'd rather have that conversation now than discover it in March.",
        "Not much, I'm open. If the nursery turned out better for her after a month, we'd adjust and try something new, and I'd tell my parents that plainly.",
        "Some, but not everything. I owe them a lot, but I also have my limits, and Ava and Chidi come first in my own life now.",
    ), "LHHH", "deliberate", ("long",)),
    Case("family-one-word", "family", 6, (
        "Me.",
        "Needs.",
        "Everything.",
        "Nothing.",
        "Sleep.",
    ), ".L.H", "unclear", ("one-word",)),
    Case("family-duty-decisive", "family", 7, (
        "Me, and I don't mind. Looking after my family is my job, full stop.",
        "My own, obviously. Rosa comes first here.",
        "I'm fairly sure I know. I'd call them tonight and ask them straight out.",
        "No, it really is either-or. Either I lend her the money or I don't, and I've decided: I will.",
        "A lot; it's how I was raised. Family comes first, no question.",
    ), "H.HL", "decisive", ("plain",)),
    Case("family-spanish", "family", 8, (
        "Yo, siempre yo. Estoy cansada.",
        "Sería difícil explicarlo a Marcus, pero lo haría.",
        "Que mi madre me necesita más que nunca este año.",
        "Sí, podríamos probar un año y ver qué pasa.",
        "Casi todas son mías, la verdad.",
    ), "....", "unclear", ("spanish",)),
    Case("family-fair-open", "family", 9, (
        "It's shared fairly, mostly. Danny did the visiting, I did the paperwork.",
        "Yes, I think so. Everyone gets an equal share, the same for all three of us.",
        "No, I've said what I need to. I told Danny and Claire exactly what I think.",
        "I'm open to changing most of it. We could rent it out for a year and rethink.",
        "Less than they seem to expect. I'm not responsible for fixing everyone's finances.",
    ), "LHHH", "balanced", ("plain",)),

    # Finance: Risk tolerance, Long-term thinking, Emotional control, Information seeking.
    Case("finance-issue-take-a-week", "finance", 0, (
        "I'd treat it as a lesson. Mara's studio might fail, but I could live with that.",
        "Protecting my future security, and clearing the loan so future me isn't paying 6.8 percent for years.",
        "I would take a week before deciding anything, because the first hour is when I'm most excited and least sensible. After a week the excitement settles, I can look at the loan, Dev's deposit and Mara's plan side by side, and the answer I'd give then is the one I trust.",
        "A qualified professional, probably a financial adviser, and if they disagreed I'd ask why before deciding.",
        "It made me more careful. I lost money on crypto once and I still think about it.",
    ), ".HHH", "deliberate", ("issue", "contradiction")),
    Case("finance-issue-too-safe", "finance", 1, (
        "I'm worried that if I play it too safe I'll regret it later.",
        "The larger one later. The equity only matters if I'm still there in four years, and I'm thinking long term.",
        "Clear numbers in front of me",
        "I've compared several views: two friends at startups and a forum of people who joined early.",
        "The bold one, honestly. Priya is the best person I've worked with and I'd bet on her.",
    ), "HH.H", "balanced", ("issue",)),
    Case("finance-cautious-worrier", "finance", 2, (
        "The safest, every time. That emergency fund took me years to build and I'm scared of being back on the edge.",
        "They feel close, actually. I think about retirement a lot and this money is part of my future.",
        "A lot, I hate letting people down. If I say no to Tomas I'll feel guilty for months, and I'm anxious just thinking about the call.",
        "A lot more, honestly. I'd want to see his budget and what the garage actually quoted.",
        "I couldn't accept any loss. What if he can't pay it back? I can't afford to lose half of it.",
    ), "LHLH", "cautious", ("feeling",)),
    Case("finance-quick-low", "finance", 3, (
        "None of it",
        "The sure thing now",
        "I act fast to make it stop",
        "No one, it's my decision",
        "Relief, mostly",
    ), "LLLL", "unclear", ("quick-replies",)),
    Case("finance-irony-fear", "finance", 4, (
        "Oh great, the worst outcome. Yeah right, like I haven't pictured it every morning at breakfast.",
        "The larger one later. I'm not retiring for four years, so there's time for the market to come back.",
        "Fear, and it's steering a lot. I panic every time I open the app.",
        "A qualified professional. My sister's advice is always 'sell', and I'm sick of hearing it.",
        "It made me braver, weirdly. I held on in 2020 and it came back.",
    ), "HHLH", "cautious", ("irony", "exasperation")),
    Case("finance-hedger", "finance", 5, (
        "idk. something in the middle maybe",
        "not sure, depends on the gap I guess",
        "probably feeling? idk",
        "a rough estimate maybe",
        "no idea honestly",
    ), "....", "exploratory", ("hedging",)),
    Case("finance-bold-long", "finance", 6, (
        "It bothers me a lot. I've spent three years building this on weekends and this order is exactly the opportunity I was waiting for, so walking away from it just to keep things predictable would feel like wasting all that work. I'd rather take the chance now, while I'm twenty-nine and single and nobody depends on my salary.",
        "A clear long-term plan. In five years I want the notebooks to be my main income, with a small studio and two or three people working with me. This order is the first real step, and repeat orders would let me build up a proper business instead of a hobby.",
        "Very little, honestly. My parents will worry, but it's my call, and I've learned to hear their worry without letting it steer me. I'll sleep on it for a night and then decide calmly.",
        "A few key numbers: the real cost per notebook at 2,000 units, how long the cutter takes to pay for itself, and whether the chain pays on delivery or ninety days later. I've already started a spreadsheet so I can compare the numbers properly.",
        "It made me braver. I once spent my savings on a stall at a craft fair and it paid off within a month, which taught me that calculated risks can work.",
    ), "HHHH", "deliberate", ("long",)),
    Case("finance-yolo-intuitive", "finance", 7, (
        "Relief, mostly. But honestly I'd rather enjoy it while I can.",
        "I don't really have one. I live in the moment and my gut says go to Japan.",
        "Feeling, definitely. I bought a car on a whim once and loved it anyway.",
        "No one, it's my decision. It feels right and I trust myself.",
        "A small loss would be fine. It's only money.",
    ), "LLLL", "intuitive", ("plain",)),
    Case("finance-german-mixed", "finance", 8, (
        "Relief, mostly. I've worked long enough.",
        "Joe und ich wollen reisen, solange die Knie noch mitmachen.",
        "Ehrlich gesagt, sehr wenig. Das ist meine Entscheidung.",
        "I've compared several views, including a pension adviser and two colleagues who took the last buyout.",
        "Es hat mich vorsichtiger gemacht.",
    ), "L..H", "unclear", ("german",)),
    Case("finance-calm-analyst", "finance", 9, (
        "A bit of regret, but I can live with it.",
        "Protecting my future security, because paying off the loan now means more money for retirement down the road.",
        "Thinking, actually. I try to stay calm and sleep on anything over a few hundred dollars.",
        "It would change everything. I'd recalculate, weigh it again and get a second opinion.",
        "A small loss would be fine, as long as the money for the loan is protected first.",
    ), ".HHH", "deliberate", ("plain",)),

    # Health: Prevention, Self-compassion, Information seeking, Consistency.
    Case("health-issue-tired", "health", 0, (
        "I am tired, really tired. Taking it seriously now, I suppose, before it gets worse.",
        "I'd be kinder to them. With myself I just think I'm lazy and should push through.",
        "My own sense of things. Doctors just tell you to sleep more.",
        "I know what it would be: phone off at eleven, every night, no exceptions.",
        "Time, and the contract. There's never time.",
    ), "HLLH", "balanced", ("issue", "tired")),
    Case("health-avoider-negation", "health", 1, (
        "There's one I keep ignoring. I don't think it's urgent, it'll pass.",
        "Mostly avoiding guilt. I'm not going to be kind to myself about this, I let it slide twice.",
        "I'm not sure I'd ask anyone. I don't want to know, honestly.",
        "Just my own stubbornness",
        "I'd rather not think about it",
    ), "LLL.", "balanced", ("negation",)),
    Case("health-consistent-runner", "health", 2, (
        "Nothing, I usually manage. I book the physio as soon as something hurts.",
        "Needing rest, if I'm honest. I'm learning it's okay to take a day off.",
        "I check where it comes from. Definitely the physio over random forums.",
        "A fixed time in my day. I run every morning at six, no matter what.",
        "Nothing I've noticed, and I'd book it straight away if I did.",
    ), "HHHH", "decisive", ("plain",)),
    Case("health-quick-mixed", "health", 3, (
        "The more careful one",
        "Mostly avoiding guilt",
        "No, I'd rather know",
        "In bad weeks, nothing works",
        "When someone else nudges me",
    ), ".LHL", "unclear", ("quick-replies", "contradiction")),
    Case("health-french", "health", 4, (
        "Je serais content de ne plus boire le jeudi.",
        "Un peu des deux, franchement.",
        "Pas grand-chose, je sais déjà ce que je dois faire.",
        "Un verre au lieu de trois, chaque jeudi.",
        "Le temps et la pression au travail.",
    ), "....", "unclear", ("french",)),
    Case("health-self-kind-long", "health", 5, (
        "Money, mostly, and the feeling that nothing terrible has happened so I don't deserve help yet. But I've started to think that waiting until it gets worse is exactly the mistake, and I'd rather book something now and catch it early than spend the summer like this.",
        "Mostly what I want. I'm trying to be kind to myself and treat this like I would if a friend felt this flat, because I'd tell a friend it's okay to get help.",
        "A doctor or other professional. My GP was good last time and I trust evidence more than my own mood right now.",
        "A bit optimistic, if I'm honest. I tend to give up on routines when I feel like this, so I'd need to keep it small.",
        "A few, if I'm honest: I've stopped climbing and I leave messages for days. I've been filing all of it under later, which is why I want to act early this time.",
    ), "HHHL", "deliberate", ("long",)),
    Case("health-emoji-quick", "health", 6, (
        "\U0001f62c",
        "That I've failed again",
        "\U0001f937",
        "\U0001f44d\U0001f44d",
        "Taking this seriously now",
    ), "HL..", "unclear", ("emoji", "quick-replies")),
    Case("health-walker", "health", 7, (
        "When it gets in the way. I'm sixty-eight and I've never run to the doctor for every ache.",
        "I think I can manage that. Joan used to say I should go easy on myself, and she was right.",
        "Someone close to me. Beryl, mostly, and my son.",
        "I know what it would be: the Tuesday walk, every week, with Mila in the pushchair. I'd make it a routine.",
        "Nothing I've noticed. Though to be fair I only go when it hurts.",
    ), "LH.H", "balanced", ("plain",)),
    Case("health-hedging-feelings", "health", 8, (
        "Not sure. Maybe when \u00c9lise says something? idk",
        "Needing rest, I guess. I feel guilty even saying it.",
        "Honestly, I struggle with that. I'm never sure what to believe.",
        "Maybe a friend? Or reminders. I don't know.",
        "The same one I'm leaning to, I think, but I'm torn.",
    ), ".L..", "exploratory", ("hedging", "feeling")),
    Case("health-preventer", "health", 9, (
        "As soon as I notice it. My dad waited until it was too late, so I'd rather book it early and catch it.",
        "Pretty much the same. I'm patient with myself, and I forgive myself for the two reschedules.",
        "One or two key things: what the test involves, and how soon the results come back. I'd look up the NHS page and ask the GP.",
        "A fixed time in my day. I keep a daily routine and stick to it.",
        "Nothing I've noticed, but I go to every check-up because prevention is cheaper than cure.",
    ), "HHHH", "deliberate", ("plain",)),

    # Relationships: Openness, Boundaries, Empathy, Conflict handling.
    Case("relationships-open-direct", "relationships", 0, (
        "Everything, openly. I'd tell them exactly how I feel, because Sam deserves to know.",
        "Yes, and I've said it: I won't give up my mother's care entirely. That's my limit, no question.",
        "Losing something that matters. Sam's afraid I'll resent them, and I understand why.",
        "Raise it directly, definitely. I'd rather sit down and talk it through than let it fester.",
        "Quite comfortable. I'm not good at hiding things anyway.",
    ), "HHHH", "decisive", ("plain",)),
    Case("relationships-people-pleaser", "relationships", 1, (
        "Most of it, honestly. I keep it light with Keisha and pretend the money is fine, because I'm scared she'll think I don't care.",
        "It would feel selfish. I don't want to disappoint her, so I'll find a way to make it work.",
        "Concern for them. I can imagine how hurt she'd be, and I care about her so much.",
        "Shaken for days. I'm so anxious in arguments that I avoid them.",
        "I go quiet and listen",
    ), "LLHL", "cautious", ("feeling",)),
    Case("relationships-exasperated", "relationships", 2, (
        "I share something back. That's how it's always worked with Hana.",
        "Yes, that's theirs to handle. I'm sick of tiptoeing around my own flat.",
        "Something I'd disagree with. Marcus would say he's hardly ever there. Yeah right.",
        "Nothing, I'll have it soon. Of course it's me who has to bring it up, as usual.",
        "Some of it. Mostly how fed up I am.",
    ), "HHLH", "balanced", ("exasperation", "irony")),
    Case("relationships-quick-high", "relationships", 3, (
        "Everything, even the hard parts",
        "That's already how I see it",
        "Most of it",
        "Raise it directly",
        "Nothing bad, I think",
    ), "HHHH", "unclear", ("quick-replies",)),
    Case("relationships-long-empathic", "relationships", 4, (
        "Enough to understand, I think. I don't need Jonah to know every detail of how lonely last spring was, but I do want him to know that the silence after my mum's illness hurt, because otherwise I'm just quietly pulling away and he'll never know why the friendship changed.",
        "It would shift a few things. I'd stop picking up at midnight every time, and I'd say no when I'm exhausted, which would feel strange after fifteen years of always being available to him.",
        "I could explain it well, actually. He'd say I'm the one person who never judges him, that he's going through a rough patch and that he assumes I'm fine because I always seem fine. From where he stands it probably doesn't feel one-sided at all, and I can understand that.",
        "Drop hints, usually, and then wait for the other person to notice. I'm not proud of it; I hate confrontation and I tend to hope things blow over.",
        "Only with a few people, and Jonah used to be one of them. I'd like to be honest with him about it again.",
    ), "HHHL", "deliberate", ("long",)),
    Case("relationships-emoji-no", "relationships", 5, (
        "\U0001f937\u200d\u2640\ufe0f\U0001f605\U0001f643",
        "no",
        "no",
        "\U0001f610",
        "idk",
    ), "..H.", "unclear", ("emoji", "one-word", "issue")),
    Case("relationships-german-mixed", "relationships", 6, (
        "Dass es Theo verletzt. Ich will ihm nichts verheimlichen.",
        "No, I agreed on purpose. Meeting Alina was my decision and I told Theo straight away.",
        "Something I already sense. She's grieving and I can put myself in her place.",
        "Ich weiß nicht, wie ich anfangen soll.",
        "Nur mit wenigen Menschen.",
    ), ".HH.", "unclear", ("german",)),
    Case("relationships-issue-avoidant", "relationships", 7, (
        "It would change things between us. Mira would think I'm failing with Ezra.",
        "Yes, and I regret it. I said yes to the alternate weeks without really thinking.",
        "Yes, now that you ask. I've been so focused on the vape pen that I haven't thought about how Ezra must feel.",
        "I'm not brave\u2026 I usually avoid conflict and wait for it to blow over.",
        "Most of it, honestly. I keep it to myself and pretend everything's fine.",
    ), "LLLL", "balanced", ("issue", "negation")),
    Case("relationships-spanish", "relationships", 8, (
        "Que se rompa la amistad con Chloe.",
        "Sí, eso es cosa suya.",
        "Algo que ya intuyo, creo.",
        "Más cerca, normalmente.",
        "Solo con pocas personas.",
    ), "....", "unclear", ("spanish",)),
    Case("relationships-contradiction", "relationships", 9, (
        "Nothing bad, I think. I'd be upfront with Sam about everything.",
        "I'm not sure I have one. I'd go along with whatever Sam needs.",
        "No, I've thought of everyone: Sam, my mum, my friends, even my patients.",
        "It slowly gets worse",
        "Most of it, honestly. I haven't told anyone how scared I am of leaving.",
    ), ".LH.", "balanced", ("contradiction",)),

    # Three journeys typed in a browser (the look at the distributed deployment, finding 5),
    # with the seeds that ask the same questions; each read by a human before the rules ran.
    Case("health-look-doctor", "health", 21073, (
        "I'd probably ignore it for a few weeks and hope it goes away. I hate going to the doctor and the waiting room makes me anxious.",
        "My wife would push me to go. She's usually right about these things, to be honest, and I'd listen if she got worried.",
        "I sleep about five hours on work nights. I know it's not enough but the evening is the only time that's mine.",
        "I'd look it up online first, probably too much, and then scare myself with the worst case.",
        "I want to be around and healthy when my kids are grown. That matters more than the evenings, when I actually think about it.",
    ), "L.H.", "cautious", ("journey", "dislike")),
    Case("finance-look-gambling", "finance", 122432, (
        "I'd put most of it into paying off the credit card and keep a few thousand as a buffer. Investing feels like gambling to me after I lost money in 2022.",
        "I'd check what my bank offers and maybe ask my sister, she knows more about this than me. I wouldn't decide the same day.",
        "I would feel anxious and probably check the account every day, which I know isn't healthy.",
        "No, I'd say no to lending it. I did that once and it ruined the friendship.",
        "Long term I want to own a small flat. Short term I just want to stop worrying at the end of each month.",
    ), "L.LH", "cautious", ("journey", "comparison")),
    Case("career-look-partner", "career", 58298, (
        "Honestly I'd probably take the safer option. I have a mortgage and two kids, and I've seen friends burn out chasing startups. But I'd ask for a week to think and talk to my partner first.",
        "I'd want to know what the team is actually like day to day. Money matters but I left my last job because of a manager who micromanaged everything, so that's what I'd ask about.",
        "Probably I would say yes but regret it a bit. I find it hard to say no to people I respect, even when I know my plate is full.",
        "I think I'd write down the pros and cons and then mostly ignore the list and go with my gut. That's usually how it goes for me.",
        "Security, I guess, but I don't want to be fifty and wonder what would have happened. Maybe a side project is the compromise.",
    ), ".LHH", "exploratory", ("journey", "hedging")),
)

# Written after the reader was tuned on CASES, and not tuned on since: how it does on answers
# it has not seen. Kept apart so that figure stays honest; the test guards it from falling.
HELD_OUT: tuple[Case, ...] = (
    Case("career-heldout-craftsman", "career", 10, (
        "Mostly to myself. I've spent fourteen years keeping someone else's shop going and I want to find out what I can make with my own hands.",
        "Honestly not much. We'd tighten our belts for two years; I'd rather risk it than spend the rest of my working life wondering.",
        "Last spring I rebuilt a neighbour's staircase over three weekends. I lost track of time completely, and that told me a lot about who I am.",
        "My husband and Ruth, and I've asked both of them properly. They get a real say, because the money affects all of us.",
        "Enough would be work I'm proud of and a bit of quiet in the evenings. I'm not after a title.",
    ), ".HHH", "deliberate"),
    Case("career-heldout-anxious-climber", "career", 11, (
        "I want the senior role, badly. It would be a real step up, and I'm scared that raising the numbers issue will cost me it.",
        "A lot of one. I can't afford to be the person who rocked the boat and got pushed out.",
        "Honestly I'm not sure what I value right now. Everyone says loyalty to your manager matters, so maybe that.",
        "Yes, my old mentor would tell me straight. I'm avoiding her because I know what she'd say.",
        "Both, if I'm honest. The title matters to me more than I like to admit.",
    ), "HLLL", "cautious"),
    Case("ethics-heldout-honest", "ethics", 10, (
        "No. A grade that isn't mine would sit on my conscience for the whole residency.",
        "Yes, I'd talk to the marker first so they understand it was an honest mistake.",
        "Emailing the module lead today and saying it directly.",
        "Correcting it, even if it costs me the top band. There's no workable version that involves keeping it.",
        "Do the right thing, whatever it costs. That's what I'd want someone to tell me.",
    ), "HHHL", "decisive"),
    Case("ethics-heldout-loyal-friend", "ethics", 11, (
        "Friendship, mostly. I'd bend the truth a little for Callum; it's not like anyone gets hurt.",
        "He'd be grateful and Odette might feel let down later. I've thought about both of them.",
        "Probably. I'd still give the reference even if nobody else vouched for him.",
        "What will actually happen, mostly. He needs a job and the food bank needs someone kind.",
        "Somewhat. I'd rather nobody looked too closely at what I wrote.",
    ), "LHHH", "balanced"),
    Case("family-heldout-giver", "family", 10, (
        "Me, usually, and I'm fine with it. Someone has to hold things together.",
        "Giving each person what they need. Arjun needs a start; Raj needs the sea air. They're not the same thing.",
        "Raj would go quiet and I'd end up doing the talking, as always.",
        "We could let Arjun stay for a year and list the house after. Nobody has said that out loud yet.",
        "Most of them are mine. I'm his mum and I'll always be there for him.",
    ), "HL.H", "balanced"),
    Case("family-heldout-tired-fair", "family", 11, (
        "Less than people think. I'm exhausted, and I can't be the only one driving to that school.",
        "The same for both kids. Leo deserves as much of our time as Zoe does.",
        "That I'm tired of being the one who says no to everyone.",
        "I'd hate it. I want one arrangement and to stick with it.",
        "Me, and it doesn't feel fair at all.",
    ), "LH.L", "intuitive"),
    Case("finance-heldout-gambler", "finance", 10, (
        "It eats at me. I turned down shares at my last job and they'd be worth a fortune now.",
        "Loosely: get to forty with something I built, not just a salary.",
        "Nothing really. I already know what I want to do.",
        "Nobody. I've made up my mind and I don't need to hear otherwise.",
        "Most of it. If it fails I'll rebuild.",
    ), "HH.L", "decisive"),
    Case("finance-heldout-careful-calm", "finance", 11, (
        "Only a small one. If I lend it, I'd treat $1,000 as gone and the rest as a loan.",
        "A fair bit. Our emergency fund is what lets me sleep, and I want it there in ten years.",
        "Tomas, but I won't decide while I'm upset. I'll wait a few days and talk it over with my partner.",
        "When I've written the numbers down and they add up.",
        "It made me more careful. The $800 never fully came back.",
    ), "LHHH", "deliberate"),
    Case("health-heldout-pusher", "health", 10, (
        "When it stops me running. Until then I push through.",
        "That I'm weak and need to toughen up.",
        "Whether I'm making it worse by running on it. I'd ask a physio.",
        "Two short runs and one long one, every week, whatever happens.",
        "I'd tell them to wait and see, honestly.",
    ), "LLHH", "balanced"),
    Case("health-heldout-spanish-mixed", "health", 11, (
        "Me duele la espalda desde hace meses.",
        "That tomorrow is another day, mostly. I try to go easy on myself.",
        "No lo sé, la verdad.",
        "It takes me ages. I usually give up for a while.",
        "When Tom nags me, to be honest.",
    ), "LH.L", "balanced"),
    Case("relationships-heldout-frank", "relationships", 10, (
        "Nothing terrible. Keisha's my oldest friend; she can take the truth.",
        "The Nashville weekend. I said yes before I saw the price, and I regret it.",
        "Mostly worry for her. I know how much this wedding means to her.",
        "I say it straight out, usually over coffee.",
        "Everything. I'd want to know if she was struggling with money.",
    ), "HLHH", "balanced"),
    Case("relationships-heldout-quiet", "relationships", 11, (
        "Pretty much all of it. I haven't told Hana or Leo how much it bothers me.",
        "My Saturday mornings, my privacy, a hot shower. It's more than I want to give.",
        "That Marcus feels welcome and doesn't see a problem.",
        "I wouldn't know how to start without it sounding like an attack.",
        "Not very. I keep things to myself.",
    ), "LL.L", "balanced"),
)

# Written before the reading changes that followed the browser journeys (finding 5 of the
# look at the distributed deployment), by someone who had read the rules but not run these
# answers through them; not tuned on since. The same purpose as HELD_OUT, a second sample.
HELD_OUT_FRESH: tuple[Case, ...] = (
    Case("finance-fresh-mother-care", "finance", 12, (
        "Only if it's money I'd set aside anyway. I'm not putting the house at risk, full stop.",
        "Whether Mum was looked after properly. The money will have sorted itself out one way or another.",
        "Completely different. Right now I'd just say yes to everything out of guilt, so I'm giving it the weekend.",
        "A lot. If the care home fees are higher than the leaflet says, the whole plan falls apart, so I'm ringing them tomorrow to get it in writing.",
        "Doesn't bother me. I'd rather sleep at night.",
    ), "L.HH", "deliberate"),
    Case("finance-fresh-market-drop", "finance", 13, (
        "Honestly I hate seeing it go down. If it drops much more I'll want to sell everything and put it in the bank.",
        "For not panicking. My dad sold at the bottom in 2008 and never got it back.",
        "Graham's. He checks the balance every morning and gets really wound up, and it rubs off on me.",
        "Depends what it is. I'd probably ring the adviser before I did anything.",
        "None of the emergency money. The rest can stay where it is and ride it out, I suppose.",
    ), "LHLH", "cautious"),
    Case("ethics-fresh-site-safety", "ethics", 12, (
        "Safety. People will be in that building for decades, I'm not signing off wiring I haven't seen.",
        "The electrician's probably under the same deadline pressure as me. Doesn't excuse it though.",
        "Sick to my stomach every time I drove past it.",
        "Yes. I'd still want my name off it.",
        "No. Not with fire safety. I'd rather eat the delay.",
    ), "HHHL", "decisive"),
    Case("ethics-fresh-borrowed-address", "ethics", 13, (
        "Fairness to the other families, I suppose. But it's not like the rule is sacred, the catchment lines are arbitrary anyway.",
        "Mateo. He's seven and loves that school. I keep forgetting the kid on the waiting list who'd get his place.",
        "Probably not. I'd hate to be the neighbour who reported a family.",
        "Then I'd leave it. No point making enemies for nothing.",
        "Mind your own business unless someone's getting hurt.",
    ), "LHLH", "balanced"),
    Case("relationships-fresh-holiday-dread", "relationships", 12, (
        "That I dread going up there every year. I've never told Mum, she'd be crushed.",
        "Awful. I usually cave within a day and say yes anyway.",
        "Being on her own at Christmas since Dad died. I get it, I really do.",
        "Nothing changes, I go up, I'm miserable, Rafael's annoyed with me again.",
        "A huge row. I'd rather avoid that if I can.",
    ), "LLHL", "cautious"),
    Case("relationships-fresh-limit-said", "relationships", 13, (
        "Nothing really, I've told Emma most of it. Jonah's the one I haven't told.",
        "I'm not picking up at 2am anymore. I told him that last month, politely.",
        "He'd probably say he didn't realise. He's been having a rough year too, to be fair.",
        "We'd drift. Which might be fine honestly.",
        "I'd want him to just tell me straight, not ghost me.",
    ), ".HHH", "balanced"),
    Case("career-fresh-fridays", "career", 12, (
        "Doing fewer hours and still doing good work. I'm not interested in being head of design.",
        "I went freelance for a year in my twenties and hated the uncertainty. Never again.",
        "My own, for once. I know I'm better at four focused days than five tired ones.",
        "I usually run it past Callum and the team, then decide.",
        "Nothing to anyone. I just want my Fridays.",
    ), "LLHH", "decisive"),
    Case("career-fresh-graduate-unsure", "career", 13, (
        "No idea honestly. Everyone says the grad scheme is the sensible move so maybe that.",
        "The startup folds and I'm job hunting again in a year. That would be rough but I'm 23, I'd survive.",
        "Learning, I think. And not being bored.",
        "Just my dad, and he wants me to take the safe one. Haven't really asked anyone else.",
        "Haven't thought about it. Enough to pay rent and not hate Mondays.",
    ), ".HL.", "exploratory"),
    Case("health-fresh-thursday-heart", "health", 12, (
        "Waking up at 4am with my heart going after a big night. I keep telling myself it's nothing.",
        "Cutting back without beating myself up when I slip. One week at a time.",
        "My GP, she doesn't sugar-coat things. Not the lads at the pub, that's for sure.",
        "Not very, if I'm honest. Thursdays are basically compulsory in sales.",
        "Usually when it scares me. Which I know is late.",
    ), "LHHL", "balanced"),
    Case("health-fresh-flat-student", "health", 13, (
        "Feeling flat all the time, not wanting to see anyone. I keep putting off the GP.",
        "I'd tell a friend to go, no question. To myself I'm way harsher, I just think I'm being lazy.",
        "I don't really. I end up on forums at midnight reading horror stories.",
        "Running with my flatmate for a bit. Stopped when exams started.",
        "Get on the waiting list now, obviously. Easier to say for someone else.",
    ), ".LLL", "balanced"),
    Case("family-fresh-go-between", "family", 12, (
        "I owe Mum something, she's the one who keeps asking me to make peace. Tom\u00e1s I owe nothing.",
        "Pablo's. He's the one getting married and this isn't about him.",
        "I'd have to actually ask them, and I haven't. I've been avoiding the whole conversation.",
        "An apology from Tom\u00e1s. A real one, not a text.",
        "Me, and no it doesn't feel fair. I've been the go-between for years.",
    ), "HHL.", "balanced"),
    Case("family-fresh-sunday-lunch", "family", 13, (
        "A lot. They raised me and never asked for anything, so saying no feels ungrateful.",
        "Probably. My sister might say they never did this for her kids though.",
        "That I'm scared of hurting Mum's feelings. I haven't said that to Chidi even.",
        "Sunday lunch at theirs. I'd keep that whatever happens.",
        "Ava is mine. The rest, ferrying everyone about, I picked up because nobody else would.",
    ), "H.LL", "balanced"),
)
# fmt: on
