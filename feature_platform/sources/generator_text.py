"""Wording for synthetic messages and reviews.

Texts are combined from small phrase pools so they vary, and each pool carries a clear sentiment
(VADER-style words: "great", "love", "thanks" vs "terrible", "worst", "disappointed") so that review
and message sentiment features agree with the latent satisfaction that produced them. Review
sentences use topic-specific vocabulary (delivery, price, quality, service, fit, app) so a topic
model finds real structure. All pools are built once, in a fixed order, for determinism.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

NEGATIVE, NEUTRAL, POSITIVE, AGENT = 0, 1, 2, 3

_MESSAGE_OPENERS = {
    POSITIVE: ("Hi,", "Hello team,", "Hey!", "Good morning,", "Hi there,"),
    NEUTRAL: ("Hi,", "Hello,", "Good afternoon,", "Quick question:", "Hi team,"),
    NEGATIVE: ("Hello,", "Hi,", "Seriously,", "This is unacceptable:", "Listen,"),
}
_MESSAGE_CORES = {
    POSITIVE: (
        "the seller was great and everything went smoothly!",
        "thanks so much for the quick help with my order.",
        "I love the new search filters, they make browsing easy.",
        "my package arrived early and in perfect condition.",
        "the apartment viewing you arranged was excellent.",
        "your support agent was really helpful and kind.",
        "I found exactly what I was looking for, amazing selection.",
        "great experience buying the bike through your app.",
        "the refund was processed fast, much appreciated.",
        "I am very happy with the furniture I bought.",
    ),
    NEUTRAL: (
        "can you tell me when my order will ship?",
        "how do I change the email address on my account?",
        "is this listing still available?",
        "what are the delivery options to my city?",
        "I would like to update my payment method.",
        "where can I find the invoice for my last purchase?",
        "can I schedule a viewing for next week?",
        "how long does the verification process take?",
        "does the price include shipping?",
        "I need to change my delivery address.",
    ),
    NEGATIVE: (
        "my order arrived broken and nobody answers.",
        "this is the worst service I have ever had.",
        "I am very disappointed with the delivery delay.",
        "the seller never showed up and ignored my messages.",
        "the listing was a scam and I lost my money.",
        "your app keeps crashing and I cannot log in.",
        "I was charged twice and I am really angry.",
        "the item is terrible and nothing like the photos.",
        "I have been waiting for two weeks, this is awful.",
        "support was rude and useless.",
    ),
}
_MESSAGE_CLOSERS = {
    POSITIVE: ("Thanks a lot!", "Keep up the great work.", "Really appreciate it!", "Have a wonderful day.", "You are awesome."),
    NEUTRAL: ("Regards.", "Please let me know.", "Waiting for your reply.", "Sent from my phone.", ""),
    NEGATIVE: ("I want a refund now.", "Very frustrated.", "I am thinking of closing my account.", "Fix this immediately.", "Horrible experience."),
}
_AGENT_OPENERS = ("Hello, this is the support team.", "Hi, thank you for contacting us.", "Good day,", "Hello,")
_AGENT_BODIES = (
    "We have received your message and are looking into it.",
    "Your request has been forwarded to the responsible team.",
    "Could you please share your order number?",
    "We will get back to you within 24 hours.",
    "The details have been updated on your account.",
    "You can find more information in the help center.",
    "We have checked the listing and passed your note to the seller.",
    "A colleague will contact you shortly.",
)

REVIEW_TOPICS: tuple[str, ...] = ("delivery", "price", "quality", "customer_service", "size_fit", "app_website")
_REVIEW_OPENERS = (  # by rating 1..5
    ("Terrible.", "Worst experience ever.", "Absolutely awful.", "Horrible, avoid."),
    ("Disappointed.", "Below expectations.", "Rather poor.", "Could be better, sadly."),
    ("It was okay.", "Average experience.", "Mixed feelings.", "Nothing special.", "Fine, I guess."),
    ("Good overall.", "Pretty good.", "Nice experience.", "Happy with it."),
    ("Excellent!", "Absolutely love it!", "Fantastic, highly recommend.", "Perfect, amazing service!"),
)
_REVIEW_SENTENCES = {  # topic -> (negative, neutral, positive)
    "delivery": (
        ("The delivery was late and the package arrived damaged.", "Shipping took forever and the courier lost my parcel.",
         "Tracking never updated and the package came two weeks late.", "The courier left the box outside in the rain."),
        ("Delivery took about a week, as expected.", "The package arrived on the estimated date.",
         "Shipping was standard and tracking worked.", "The courier came in the afternoon."),
        ("Delivery was super fast and the package was well protected.", "Shipping was quick and tracking was accurate.",
         "The courier was friendly and arrived early.", "The parcel arrived the next day, great delivery."),
    ),
    "price": (
        ("Way too expensive for what you get, a waste of money.", "The price was misleading and hidden fees were added.",
         "Overpriced, poor value for money.", "I paid far too much, a bad deal."),
        ("The price is about average for this kind of item.", "Value for money is reasonable.",
         "It costs the same as in other shops.", "The price was as listed."),
        ("Great value for money, the price was very fair.", "Cheap price and excellent value.",
         "A fantastic deal, worth every cent.", "Affordable price, a good bargain."),
    ),
    "quality": (
        ("The quality is poor and it broke after two days.", "Cheap material, badly made and flimsy.",
         "It fell apart quickly, terrible build quality.", "The stitching came loose and the material feels cheap."),
        ("Quality is acceptable, the material is standard.", "Build quality is as described.",
         "The material is ordinary.", "It works as it should."),
        ("Excellent quality, solid material and sturdy build.", "Very well made and durable.",
         "The build quality is superb.", "High quality material, it feels premium."),
    ),
    "customer_service": (
        ("Customer service was rude and never answered my emails.", "The support agent was unhelpful and ignored my complaint.",
         "I contacted support three times with no response.", "Staff were dismissive and the complaint was never resolved."),
        ("Customer service replied after a couple of days.", "I contacted support once about my order.",
         "The support agent answered my question.", "Staff handled the request in the usual time."),
        ("Customer service was helpful and friendly.", "The support agent solved my problem right away.",
         "Staff were kind and responded within minutes.", "Wonderful support team, very responsive."),
    ),
    "size_fit": (
        ("The size was completely wrong and it did not fit.", "Too small, the measurements in the listing were wrong.",
         "The fit is awful, way too tight.", "Sizes run large and the return was a hassle."),
        ("The size matches the chart.", "Fit is normal, maybe slightly large.",
         "I ordered my usual size.", "Measurements were as described in the listing."),
        ("The size is perfect and it fits beautifully.", "Perfect fit, true to size.",
         "Fits great, the measurements were accurate.", "Comfortable fit and the size chart is spot on."),
    ),
    "app_website": (
        ("The app keeps crashing and checkout failed twice.", "The website is slow and the search is useless.",
         "I could not log in and the page kept freezing.", "The checkout page is broken and confusing."),
        ("I used the app to place the order.", "The website search works.",
         "Checkout on the website took a few steps.", "I ordered through the mobile app."),
        ("The app is easy to use and checkout is smooth.", "The website is fast and the search filters are great.",
         "Love the app, browsing listings is a pleasure.", "Checkout on the website was quick and simple."),
    ),
}
_REVIEW_CLOSERS = (  # negative, neutral, positive
    ("Would not buy again.", "Never ordering here again.", "I want my money back.", "Avoid.", "Very disappointed."),
    ("", "That's all.", "Might order again.", "We will see.", "No strong opinion."),
    ("Highly recommend!", "Will definitely buy again.", "Thanks a lot!", "Five stars from me.", "Love it."),
)
REVIEW_NULL_SHARE = 0.02
REVIEW_EMPTY_SHARE = 0.01


@dataclass(frozen=True)
class PhrasePool:
    """Phrases in groups (e.g. one group per sentiment); `pick` draws one index per requested group."""

    texts: pa.Array
    offsets: np.ndarray
    sizes: np.ndarray

    @classmethod
    def from_groups(cls, groups: Sequence[Sequence[str]]) -> PhrasePool:
        sizes = np.array([len(g) for g in groups], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        return cls(pa.array([t for g in groups for t in g], type=pa.string()), offsets, sizes)

    def pick(self, rng: np.random.Generator, group: np.ndarray) -> np.ndarray:
        return self.offsets[group] + (rng.random(len(group)) * self.sizes[group]).astype(np.int64)

    def take(self, index: np.ndarray) -> pa.Array:
        """Texts for `index`; a negative index gives null."""
        return self.texts.take(pa.array(index, type=pa.int64(), mask=index < 0))


def _combine(*parts: Sequence[str]) -> list[str]:
    return [" ".join(p for p in combo if p) for combo in product(*parts)]


def message_pool() -> PhrasePool:
    """User messages by sentiment (groups NEGATIVE, NEUTRAL, POSITIVE) and polite agent replies (AGENT)."""
    groups = [_combine(_MESSAGE_OPENERS[s], _MESSAGE_CORES[s], _MESSAGE_CLOSERS[s]) for s in (NEGATIVE, NEUTRAL, POSITIVE)]
    groups.append(_combine(_AGENT_OPENERS, _AGENT_BODIES))
    return PhrasePool.from_groups(groups)


@dataclass(frozen=True)
class ReviewPools:
    openers: PhrasePool  # group = rating - 1
    sentences: PhrasePool  # group = topic * 3 + polarity
    closers: PhrasePool  # group = polarity


def review_pools() -> ReviewPools:
    return ReviewPools(
        openers=PhrasePool.from_groups(_REVIEW_OPENERS),
        sentences=PhrasePool.from_groups([pool for topic in REVIEW_TOPICS for pool in _REVIEW_SENTENCES[topic]]),
        closers=PhrasePool.from_groups(_REVIEW_CLOSERS),
    )


def review_texts(pools: ReviewPools, rating: np.ndarray, topic: np.ndarray, second_topic: np.ndarray, rng: np.random.Generator) -> pa.Array:
    """Opener + one or two topic sentences + closer, all matching the rating's polarity.

    `second_topic` < 0 means a single-topic review. A small share comes out null or empty, as real
    review exports do.
    """
    n = len(rating)
    polarity = np.where(rating <= 2, NEGATIVE, np.where(rating == 3, NEUTRAL, POSITIVE))
    opener = pools.openers.take(pools.openers.pick(rng, rating - 1))
    first = pools.sentences.take(pools.sentences.pick(rng, topic * 3 + polarity))
    has_second = second_topic >= 0
    second_index = pools.sentences.pick(rng, np.maximum(second_topic, 0) * 3 + polarity)
    second = pools.sentences.take(np.where(has_second, second_index, -1))
    body = pc.if_else(pa.array(has_second), pc.binary_join_element_wise(first, second, " "), first)
    closer = pools.closers.take(pools.closers.pick(rng, polarity))
    text = pc.utf8_rtrim_whitespace(pc.binary_join_element_wise(opener, body, closer, " "))
    u = rng.random(n)
    text = pc.if_else(pa.array(u < REVIEW_NULL_SHARE + REVIEW_EMPTY_SHARE), pa.scalar("", pa.string()), text)
    return pc.if_else(pa.array(u < REVIEW_NULL_SHARE), pa.scalar(None, pa.string()), text)
