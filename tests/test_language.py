from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline import language
from pipeline.language import detect_language, normalise_code

SAMPLES = {
    "en": "Vladimir Putin and Xi Jinping signed a joint statement on deepening their partnership in Beijing.",
    "ru": "Владимир Путин и Си Цзиньпин подписали совместное заявление об углублении партнёрства в Пекине.",
    "zh": "俄罗斯总统普京与中国国家主席习近平在北京签署了关于深化全面战略协作伙伴关系的联合声明。",
    "de": "Wladimir Putin und Xi Jinping unterzeichneten in Peking eine gemeinsame Erklärung zur Partnerschaft.",
    "fr": "Vladimir Poutine et Xi Jinping ont signé à Pékin une déclaration commune sur leur partenariat.",
    "ja": "プーチン大統領と習近平国家主席は北京で共同声明に署名し、両国の協力を深めることで合意した。",
}


# Languages langdetect has no profile for, told by their letters: scripts of their own,
# Cyrillic and Latin letters only some languages write. (Written for the test.)
BY_LETTERS = {
    "hy": "Ռուսաստանի և Չինաստանի նախագահները հանդիպեցին Պեկինում և քննարկեցին համագործակցությունը։",
    "ka": "რუსეთისა და ჩინეთის პრეზიდენტები პეკინში შეხვდნენ და განიხილეს ორმხრივი თანამშრომლობა.",
    "am": "የሩሲያ እና የቻይና ፕሬዝዳንቶች በቤጂንግ ተገናኝተው የሁለትዮሽ ትብብርን እና ንግድን ተወያይተዋል።",
    "my": "ရုရှားနှင့် တရုတ် သမ္မတများသည် ဘေဂျင်းတွင် တွေ့ဆုံပြီး ကုန်သွယ်မှုကို ဆွေးနွေးခဲ့ကြသည်။",
    "km": "ប្រធានាធិបតីរុស្ស៊ី និងចិន បានជួបគ្នានៅទីក្រុងប៉េកាំង ហើយបានពិភាក្សាអំពីពាណិជ្ជកម្ម។",
    "lo": "ປະທານາທິບໍດີຣັດເຊຍ ແລະ ຈີນ ໄດ້ພົບປະກັນທີ່ປັກກິ່ງ ແລະ ໄດ້ປຶກສາຫາລືກ່ຽວກັບການຄ້າ.",
    "bo": "ཨུ་རུ་སུ་དང་རྒྱ་ནག་གི་སྲིད་འཛིན་ཚོས་པེ་ཅིང་དུ་མཇལ་འཕྲད་བྱས།",
    "si": "රුසියාවේ සහ චීනයේ ජනාධිපතිවරු බීජිංහිදී හමු වී වෙළඳාම ගැන සාකච්ඡා කළහ.",
    "kk": "Ресей мен Қытай президенттері Пекинде кездесіп, екіжақты ынтымақтастықты талқылады.",
    # Tatar, once with its җ and once without (then ә and no Kazakh letter decide).
    "tt": "Россия һәм Кытай җитәкчеләре Пекинда очрашты һәм ике яклы хезмәттәшлек турында сөйләште.",
    "mn": "Орос, Хятадын ерөнхийлөгчид Бээжинд уулзаж, эрчим хүчний төслүүдийн талаар ярилцлаа.",
    "ky": "Орусия менен Кытайдын президенттери Пекинде жолугуп, жаңы долбоорлор жана өз ара соода көлөмү жөнүндө сүйлөштү. Кеңеш жаңы мыйзамды кабыл алды.",
    "tg": "Президентҳои Русия ва Чин дар Пекин мулоқот карда, ҳамкориҳои дуҷониба ва тиҷоратро муҳокима намуданд. Онҳо дар бораи рушди иқтисодӣ сӯҳбат карданд.",
    "be": "Прэзідэнты Расіі і Кітая сустрэліся ў Пекіне і абмеркавалі двухбаковае супрацоўніцтва і гандаль.",
    "sr": "Председници Русије и Кине састали су се у Пекингу. Ђорђе је рекао да ће ћерка доћи у среду.",
    "ug": "روسىيە بىلەن جۇڭگو رەھبەرلىرى بېيجىڭدا كۆرۈشۈپ، ئىككى تەرەپلىك ھەمكارلىق ۋە سودا توغرىسىدا سۆزلەشتى.",
    "ps": "د روسیې او چین ولسمشرانو په بیجنګ کې سره ولیدل او د دوه اړخیزې همکارۍ او سوداګرۍ په اړه یې خبرې وکړې.",
    "ckb": "سەرۆکەکانی ڕووسیا و چین لە پەکین کۆبوونەوە و باسیان لە هاوکاریی دوولایەنە و بازرگانی کرد. هەروەها ڕێککەوتنێکی نوێیان واژۆ کرد.",
    "az": "Rusiya və Çin prezidentləri Pekində görüşərək ikitərəfli əməkdaşlığı və ticarəti müzakirə ediblər.",
    "uz": "Rossiya va Xitoy prezidentlari Pekinda uchrashdi. Ular oʻzaro savdo, gʻarbiy hududlar va oʻquv dasturlari haqida gapirdi.",
}


@pytest.mark.parametrize(("lang", "text"), [*SAMPLES.items(), *BY_LETTERS.items()])
def test_detects_language(lang: str, text: str) -> None:
    assert detect_language(text).lang == lang
    # Only the languages without a profile are named by their letters alone.
    by_letters = language.language_by_letters(text)
    assert (by_letters.lang if by_letters else None) == (lang if lang in BY_LETTERS else None)


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        # Tatar without a җ: its ә, ө, ү, ң, һ, and none of Kazakh's қ, ғ, ұ, і.
        (
            "tt",
            "Татарстан Рәисе Пекинда Кытай делегациясе белән очрашты. Якләр сәүдә һәм энергетика өлкәсендә "
            "хезмәттәшлекне тикшерделәр.",
        ),
        # Kazakh writes ә too; its қ and ұ decide.
        (
            "kk",
            "Тараптар сауда мен энергетика салаларындағы ынтымақтастықты талқылады. Бұл кездесу Астанада өтті.",
        ),
    ],
)
def test_tatar_and_kazakh_told_apart(lang: str, text: str) -> None:
    guess = language.language_by_letters(text)
    assert guess is not None and guess.lang == lang
    assert detect_language(text).lang == lang


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        # The languages langdetect knows are left to it, quoting names in other languages'
        # letters included.
        (
            "ru",
            "Президент Казахстана Касым-Жомарт Токаев (по-казахски Қасым-Жомарт Тоқаев) встретился в Акорде "
            "(Ақорда) с председателем КНР. Лидеры обсудили транзит через Қазақстан и поставки газа в Китай.",
        ),
        (
            "uk",
            "Президенти Росії та Китаю обговорили транзит через Казахстан: Қазақстан, Ақтөбе, Қарағанды та інші "
            "міста мають стати частиною нового коридору, заявили в Пекіні представники обох країн.",
        ),
        (
            "ru",
            "Сербия (Србија) поддержала позицию Москвы. Теннисист Новак Джокович (Ђоковић) и баскетболист Никола "
            "Йокич (Јокић) приехали на турнир в Пекин, где встретились с болельщиками из России и Китая.",
        ),
        (
            "ru",
            "Президент Монголии Ухнагийн Хурэлсух (Хүрэлсүх) обсудил с Путиным и Си Цзиньпином газопровод «Сила "
            "Сибири 2» через территорию страны. Премьер Өлзийсайхан также участвовал во встрече.",
        ),
        ("bg", "Президентите на Русия и Китай се срещнаха в Пекин и обсъдиха двустранното сътрудничество."),
        # Macedonian with and without the letters Serbian lacks (ѓ ќ ѕ).
        (
            "mk",
            "Претседателите на Русија и Кина се сретнаа во Пекинг. Ќе има нови средби, рече тој, и ѓубрето ќе се собере.",
        ),
        (
            "mk",
            "Владата на Северна Македонија ја усвои одлуката. Министерот изјави дека новиот закон ја подобрува "
            "состојбата во земјата и ја зајакнува соработката со Кина и Русија.",
        ),
        (
            "fa",
            "روسیه و چین در پکن دیدار کردند و درباره همکاری های دوجانبه، تجارت و پروژه های انرژی گفتگو کردند.",
        ),
        ("ar", "التقى رئيسا روسيا والصين في بكين وناقشا التعاون الثنائي والتجارة ومشاريع الطاقة."),
        ("ur", "روس اور چین کے صدور نے بیجنگ میں ملاقات کی اور دو طرفہ تعاون اور تجارت پر بات کی۔"),
        (
            "tr",
            'Azerbaycan Cumhurbaşkanı Aliyev, "Azərbaycan Respublikası" adına yaptığı konuşmada "Əziz xalqım" diye '
            "seslendi ve Türkiye ile Rusya arasındaki enerji projelerini değerlendirdi.",
        ),
        (
            "en",
            "Azerbaijani President İlham Əliyev said in Baku that Azərbaycan would join the new transport corridor "
            "linking China and Europe through the Caspian, officials in Beijing and Moscow confirmed on Thursday.",
        ),
        # Hawaiian place names carry Uzbek's mark (ʻ), not its q and x.
        (
            "en",
            "HONOLULU — Residents of West Oʻahu met on Thursday to discuss the new Chinese-built solar farm near "
            "Waiʻanae. The Oʻahu site is the largest in the state, and a second one is planned for Kahoʻolawe.",
        ),
    ],
)
def test_languages_with_a_profile_are_left_to_the_detector(lang: str, text: str) -> None:
    assert language.language_by_letters(text) is None
    assert detect_language(text).lang == lang


# Languages without a profile of their own, written like one that has: Malay reads as
# Indonesian to langdetect, Serbian in the Latin script as Croatian.
SIBLINGS = {
    "ms": (
        "Presiden China Xi Jinping dan Presiden Rusia Vladimir Putin mengadakan rundingan di "
        "Beijing pada Khamis. Kedua-dua pemimpin menegaskan bahawa kerjasama antarabangsa perlu "
        "diperkukuh kerana situasi dunia semakin tidak menentu. Menurut kenyataan kerajaan "
        "China, perdagangan dua hala mencecah rekod baharu tahun lalu."
    ),
    "id": (
        "Presiden Tiongkok Xi Jinping dan Presiden Rusia Vladimir Putin mengadakan pembicaraan "
        "di Beijing pada Kamis. Kedua pemimpin menegaskan bahwa kerja sama internasional perlu "
        "diperkuat karena situasi dunia semakin tidak menentu. Menurut pernyataan pemerintah "
        "Tiongkok, perdagangan bilateral mencapai rekor baru tahun lalu."
    ),
    "sr": (
        "Predsednik Rusije Vladimir Putin i predsednik Kine Si Đinping razgovarali su u Pekingu o "
        "daljoj saradnji dve zemlje. Kako je saopšteno posle sastanka, strane su se složile da je "
        "vreme za jačanje ekonomske saradnje, a trgovina je prošle godine premašila 240 "
        "milijardi dolara."
    ),
    "hr": (
        "Predsjednik Rusije Vladimir Putin i predsjednik Kine Xi Jinping razgovarali su u Pekingu "
        "o daljnjoj suradnji dviju zemalja. Kako je priopćeno poslije sastanka, strane su se "
        "složile da je vrijeme za jačanje gospodarske suradnje, a trgovina je prošle godine "
        "premašila 240 milijardi dolara."
    ),
}


@pytest.mark.parametrize(("lang", "text"), SIBLINGS.items())
def test_a_language_without_a_profile_is_told_from_its_sibling_by_its_words(lang: str, text: str) -> None:
    assert detect_language(text).lang == lang
    # A declaration does not turn clear evidence round.
    wrong = {"ms": "id", "id": "ms", "sr": "hr", "hr": "sr"}[lang]
    assert detect_language(text, hint=wrong).lang == lang


def test_a_few_sibling_words_or_a_declaration_against_the_words_change_nothing() -> None:
    from pipeline.language import sibling_language

    # An Indonesian report quoting a Malaysian minister's "bahawa ... kerana" stays Indonesian:
    # its own words outnumber the quoted ones.
    quoted = SIBLINGS["id"] + " Menteri Malaysia berkata bahawa ia penting kerana ekonomi."
    assert detect_language(quoted).lang == "id"
    # Headline-length text without telling words follows the page's declared sibling.
    assert sibling_language("id", "Presiden Rusia tiba di Beijing", ["ms"]) == "ms"
    assert sibling_language("id", "Presiden Rusia tiba di Beijing") == "id"
    assert sibling_language("id", "Menurut pernyataan pemerintah", ["ms"]) == "id"
    # Other languages are left alone, whatever their words.
    assert sibling_language("en", "bahawa kerana iaitu sahaja selepas") == "en"
    # The declaration ranked first counts: the page's own "id" ahead of the feed's "ms".
    assert sibling_language("id", "Presiden Rusia tiba di Beijing", ["id", "ms"]) == "id"
    assert sibling_language("id", "Presiden Rusia tiba di Beijing", ["ms", "id"]) == "ms"


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        # Words Indonesian news uses too: a Chinese minister's surname, customs and excise,
        # "may", "kingdom".
        (
            "id",
            "Menteri Luar Negeri China Wang Yi bertemu dengan Menteri Luar Negeri Indonesia di "
            "Jakarta. Wang menyampaikan bahwa hubungan kedua negara semakin erat. Wang Yi "
            "mengatakan kerja sama ekonomi akan diperluas tahun depan.",
        ),
        (
            "id",
            "Direktorat Jenderal Bea dan Cukai menaikkan tarif cukai rokok mulai tahun depan. "
            "Warga tidak boleh membeli rokok tanpa pita cukai, dan Kerajaan Arab Saudi juga "
            "menaikkan cukai serupa.",
        ),
        # Croatian "sveta" (holy), and Bosnian: ijekavian, with the month names and
        # "hiljadu" it shares with Serbian.
        (
            "hr",
            "Sveta Stolica pozdravila je sastanak predsjednika. Sveta Stolica je u priopćenju "
            "navela da podržava mirovne napore. Svetu misu predvodio je papa u Rimu.",
        ),
        (
            "hr",
            "Bosanski premijer je 12. januara razgovarao sa ambasadorom Kine. Sastanak je održan "
            "15. februara, a novi 3. marta. Projekat će otvoriti hiljadu radnih mjesta u regiji "
            "prije kraja godine.",
        ),
    ],
)
def test_words_both_siblings_write_do_not_make_a_text_the_others(lang: str, text: str) -> None:
    assert detect_language(text).lang == lang


def test_a_page_declaring_its_language_keeps_it_against_a_short_quotation() -> None:
    quoting = (
        "Hrvatski mediji prenose izjavu srbijanskog predsjednika: 'saradnja dve zemlje važna je "
        "za bezbednost regiona posle svega'. U Zagrebu su reakcije bile suzdržane, a ministar "
        "vanjskih poslova rekao je da će Hrvatska pratiti razvoj događaja."
    )
    assert detect_language(quoting, hint="hr").lang == "hr"


def test_a_declared_sibling_settles_a_short_text_and_decomposed_letters_still_count() -> None:
    import unicodedata

    # langdetect has no Malay profile: the declaration weighs on the Indonesian one.
    assert detect_language("tahan harga kata polis lagi", hint="ms").lang == "ms"
    decomposed = unicodedata.normalize("NFD", SIBLINGS["sr"])
    assert decomposed != SIBLINGS["sr"] and detect_language(decomposed).lang == "sr"


@pytest.mark.parametrize("mark", ["'", "’", "`", "‘"])
def test_uzbek_typed_without_its_turned_comma_is_uzbek(mark: str) -> None:
    text = BY_LETTERS["uz"].replace("ʻ", mark)
    assert detect_language(text).lang == "uz"
    # Declared, it stays Uzbek (Turkish writes no q or x).
    assert detect_language(text, priors=["uz"]).lang == "uz"


def test_english_about_china_with_possessives_is_not_uzbek() -> None:
    # English news about China writes q and x often (Xi, Xinhua, Xinjiang, Qingdao) and
    # possessives after o and g: Beijing's, Qingdao’s.
    text = (
        "Xi Jinping ended a visit to Kazakhstan on Tuesday after talks on Beijing’s rail and "
        "energy plans, Xinhua said. Beijing's new line from Xinjiang to the Caspian Sea and "
        "Qingdao’s port were discussed, and Xi said Beijing’s ties with Astana were at a high. "
        "Analysts said Beijing's push into Central Asia reflects a wish to diversify supplies; "
        "Xi is expected at the next summit, which Xinhua said would focus on trade and security."
    )
    assert detect_language(text).lang == "en"


def test_decomposed_korean_and_vietnamese_are_read_composed() -> None:
    korean = "블라디미르 푸틴 러시아 대통령은 베이징에서 시진핑 중국 국가주석과 정상회담을 가졌다."
    vietnamese = "Tổng thống Nga và Chủ tịch Trung Quốc đã hội đàm tại Bắc Kinh về hợp tác năng lượng."
    for text, lang in ((korean, "ko"), (vietnamese, "vi")):
        decomposed = unicodedata.normalize("NFD", text)
        assert decomposed != text
        assert detect_language(decomposed).lang == detect_language(text).lang == lang


@pytest.mark.parametrize("text", ["", "   ", "12:45 — 2026", "OK", "Xi!", "👍👍👍"])
def test_too_short_is_undetermined(text: str) -> None:
    guess = detect_language(text)
    assert guess.lang == "und"
    assert guess.confidence == 0.0


def test_same_answer_in_other_processes() -> None:
    # Ambiguous short mixed text is where langdetect's random sampling shows.
    text = "Putin Xi Beijing Moscow gas pipeline Сила Сибири 2 summit talks"
    here = [detect_language(text, min_letters=5) for _ in range(5)]
    assert len(set(here)) == 1
    code = (
        "from pipeline.language import detect_language;"
        f"g = detect_language({text!r}, min_letters=5); print(g.lang, g.confidence)"
    )
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(3)
    }
    assert outputs == {f"{here[0].lang} {here[0].confidence}\n"}


@pytest.mark.parametrize(
    ("raw", "code"), [("en-US", "en"), ("zh_Hans", "zh"), ("RU", "ru"), ("", None), ("x1", None)]
)
def test_normalise_code(raw: str, code: str | None) -> None:
    assert normalise_code(raw) == code


def test_a_language_filter_takes_only_codes_the_detector_gives() -> None:
    detectable = language.detectable_languages()
    # Every answer of the detector is one (including the siblings and "und")...
    answers = {detect_language(text).lang for text in [*SAMPLES.values(), *BY_LETTERS.values(), "ok"]}
    assert answers <= detectable and {"und", "zh", "ms", "sr", "ckb"} <= detectable
    assert not {"zh-cn", "zh-tw"} & detectable
    # ...and a filter on any other value could match nothing.
    assert [language.filter_language(v) for v in ("EN", "en-GB", "zh-Hant", "und")] == [
        "en",
        "en",
        "zh",
        "und",
    ]
    assert [language.filter_language(v) for v in ("Russian", "xx", "", "e1")] == [None] * 4


def test_traditional_chinese_is_chinese_not_korean() -> None:
    from pipeline.language import detect_language

    traditional = "習近平在俄羅斯媒體發表署名文章，開啟中俄友好合作、共同發展新篇章。應普京總統邀請，我即將對俄羅斯聯邦進行國事訪問。"
    assert detect_language(traditional).lang == "zh"
    japanese = "習近平国家主席はロシアのプーチン大統領と北京で会談し、両国の協力について話し合いました。"
    assert detect_language(japanese).lang == "ja"
    korean = "시진핑 주석은 베이징에서 푸틴 대통령과 회담을 갖고 양국 협력에 대해 논의했다."
    assert detect_language(korean).lang == "ko"


@pytest.mark.parametrize(
    ("text", "priors"),
    [
        pytest.param(
            "露大統領、北京訪問　中国国家主席と首脳会談　天然ガス管路計画協議へ", ["ja"], id="headline-ja"
        ),
        pytest.param("露大統領、北京訪問　中国国家主席と首脳会談　天然ガス管路計画協議へ", [], id="headline"),
        pytest.param(
            "政府は十六日の閣議で、対露制裁の追加措置を決定した。外務省と財務省が協議、輸出規制品目拡大方針。",
            [],
            id="mostly-han",
        ),
        pytest.param(
            "政府は十六日の閣議で、対露制裁の追加措置を決定した。露中首脳会談、北京で開催予定、天然ガス管路計画協議。",
            [],
            id="mostly-han-2",
        ),
    ],
)
def test_japanese_with_more_han_than_kana_is_japanese(text: str, priors: list[str]) -> None:
    """Kana among Han characters and no Hangul: Japanese, never Korean (which needs
    Hangul) nor undetermined."""
    from pipeline.language import detect_language

    assert detect_language(text, priors=priors).lang == "ja"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "据Reuters报道，Gazprom与CNPC在Beijing签署了Power of Siberia 2的法律约束性备忘录。",
            "zh",
            id="zh-names",
        ),
        pytest.param(
            "Nvidia、AMD和Intel的芯片出口受限后，俄罗斯企业转向Huawei和Loongson。", "zh", id="zh-brands"
        ),
        pytest.param(
            "Putin, Xi sign Power of Siberia 2 memorandum\n俄中两国元首在北京签署西伯利亚力量2号管道备忘录。",
            "zh",
            id="zh-under-english-headline",
        ),
        pytest.param(
            "普京习近平会谈\nRussian President Vladimir Putin met Chinese leader Xi Jinping in Beijing "
            "on Tuesday to discuss energy deals.",
            "en",
            id="en-under-chinese-headline",
        ),
    ],
)
def test_latin_names_in_a_chinese_text_leave_it_chinese(text: str, expected: str) -> None:
    """Latin letters in a text whose Han characters outweigh them (a character counting as
    in text_length) do not make it English or Afrikaans; an English text under a Chinese
    headline stays English."""
    assert detect_language(text).lang == expected
    assert detect_language(text, priors=["zh"]).lang == expected


def test_full_width_forms_read_as_ordinary_letters() -> None:
    """A text in full-width Latin letters (as CJK typesetting writes them) is the language
    of its letters, not Japanese."""
    english = "Ｐｕｔｉｎ　ｍｅｔ　Ｘｉ　Ｊｉｎｐｉｎｇ　ｉｎ　Ｂｅｉｊｉｎｇ　ｔｏ　ｄｉｓｃｕｓｓ　ｇａｓ　ｐｉｐｅｌｉｎｅｓ　ａｎｄ　ｔｒａｄｅ．"
    assert detect_language(english).lang == "en"
    japanese = "ロシアのＰｕｔｉｎ大統領と中国のＸｉ主席がＢｅｉｊｉｎｇで会談した。"
    assert detect_language(japanese).lang == "ja"


def test_chinese_quoting_a_katakana_word_stays_chinese() -> None:
    from pipeline.language import detect_language

    text = (
        "俄罗斯总统普京与中国国家主席习近平在北京签署了关于深化全面战略协作伙伴关系的联合声明，"
        "日本媒体称之为パートナー关系。"
    )
    assert detect_language(text).lang == "zh"


def test_declared_language_is_a_prior_not_the_answer() -> None:
    english = (
        "Vladimir Putin and Xi Jinping signed a joint statement on deepening their partnership in Beijing."
    )
    russian = SAMPLES["ru"]
    # A feed that declares the wrong language does not change a clear answer.
    assert detect_language(english, priors=["ru"]).lang == "en"
    assert detect_language(russian, priors=["en", "zh"]).lang == "ru"
    # A headline langdetect cannot place on its own is settled by what the source declares.
    headline = "Cumbre Putin Xi en Moscú"
    assert detect_language(headline, min_letters=5).lang == "und"
    assert detect_language(headline, min_letters=5, priors=["es"]).lang == "es"
    # ...but only towards a language the text supports: a German prior does not make it German.
    assert detect_language(headline, min_letters=5, priors=["de"]).lang == "und"


def test_only_a_bounded_sample_is_read() -> None:
    english = SAMPLES["en"] + " "
    russian = SAMPLES["ru"] + " "
    text = english * 20 + russian * 200
    assert detect_language(text, sample_chars=1500).lang == "en"
    assert detect_language(text, sample_chars=50_000).lang == "ru"
    # Cut at a space, never inside a word; short texts are read whole.
    assert detect_language(SAMPLES["de"], sample_chars=100).lang == "de"


# The detector's own loader and loop, against langdetect's stock ones ----------------------

FIXTURES = Path(__file__).parent / "fixtures"


def _stock_factory() -> Any:
    """langdetect's factory loaded by langdetect itself, profiles in the same order."""
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
    from langdetect.utils.lang_profile import LangProfile

    factory = DetectorFactory()
    files = sorted(p for p in Path(PROFILES_DIRECTORY).iterdir() if not p.name.startswith("."))
    for index, profile_file in enumerate(files):
        data = json.loads(profile_file.read_text(encoding="utf-8"))
        factory.add_profile(LangProfile(**data), index, len(files))
    factory.set_seed(language.SEED)
    return factory


def _texts() -> list[str]:
    """Real texts in many languages and scripts (tuning fixtures only), plus short ones."""
    texts = list(SAMPLES.values())
    for name in ("xlingual/articles.jsonl", "classify/real_train.jsonl"):
        for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row.get("split", "dev") == "dev":
                texts.append(row["text"])
    texts += [
        "NATO USA EU summit: PUTIN XI",
        "ООН и ШОС: Путин",
        "iPhone 15 Pro Max review",
        "x" * 40,
        "https://example.org/a?b=c mail me@example.org São Paulo Việt Nam Tiếng Việt",
    ]
    return texts


def test_ngram_table_holds_langdetects_numbers() -> None:
    stock = _stock_factory()
    ours = language._factory()
    assert ours.langlist == stock.langlist
    assert len(ours.word_lang_prob_map) == len(stock.word_lang_prob_map) > 50_000
    mismatched = [
        gram for gram, row in stock.word_lang_prob_map.items() if ours.word_lang_prob_map[gram] != row
    ]
    assert mismatched == []
    assert "zz unknown" not in ours.word_lang_prob_map


@pytest.mark.slow
def test_detector_gives_langdetects_probabilities_exactly() -> None:
    stock = _stock_factory()
    ours = language._factory()
    priors_cases: list[tuple[str, ...]] = [(), ("en",), ("ru", "zh")]
    texts = _texts()
    assert len(texts) > 300
    grams = {gram: gram for gram in ours.word_lang_prob_map}
    compared = 0
    for index, text in enumerate(texts):
        sample = language._bounded(text, language.DEFAULT_SAMPLE_CHARS)
        expected_grams = stock.create()
        expected_grams.append(sample)
        expected_grams.cleaning_text()
        ours_grams = language._detector_class()(ours)
        ours_grams.append(sample)
        ours_grams.cleaning_text()
        assert ours_grams.text == expected_grams.text
        assert language.extract_ngrams(ours_grams.text, grams) == expected_grams._extract_ngrams(), text[:80]
        priors = priors_cases[index % len(priors_cases)]
        answers = []
        for factory, make in ((stock, stock.create), (ours, lambda: language._detector_class()(ours))):
            detector = make()
            if priors:
                detector.set_prior_map(language._prior_map(tuple(factory.get_lang_list()), priors))
            detector.append(sample)
            answers.append([(guess.lang, guess.prob) for guess in detector.get_probabilities()])
        assert answers[0] == answers[1], text[:80]
        compared += 1
    assert compared == len(texts)


# The n-gram table kept between runs ---------------------------------------------------------


@pytest.fixture
def fresh_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The table is built again by the next detection, and by the one after the test."""
    monkeypatch.setattr(language, "_CACHE_FOLDER", [])
    language._factory.cache_clear()
    yield
    language._factory.cache_clear()


def _table_of(factory: Any) -> tuple[list[str], list[str], list[Any]]:
    table = factory.word_lang_prob_map
    return factory.langlist, list(table.rows), list(table.arrays().values())


def _same(left: Any, right: Any) -> bool:
    """Two factories' tables: same languages, n-grams in the same rows, equal arrays."""
    (languages, grams, arrays), (other_languages, other_grams, other_arrays) = (
        _table_of(left),
        _table_of(right),
    )
    return (
        languages == other_languages
        and grams == other_grams
        and all(
            a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(arrays, other_arrays, strict=True)
        )
    )


def test_the_table_is_kept_and_read_back_exactly(
    tmp_path: Path, fresh_table: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = language._factory()
    language._factory.cache_clear()
    language.use_cache(tmp_path)
    assert _same(language._factory(), built)  # built again, and written
    (kept,) = tmp_path.glob("langdetect-*.npz")
    language._factory.cache_clear()

    def no_build(profiles: Any) -> Any:
        raise AssertionError("the table was built, not read from the cache")

    monkeypatch.setattr(language.NgramTable, "from_profiles", classmethod(lambda cls, p: no_build(p)))
    assert _same(language._factory(), built)
    assert detect_language(SAMPLES["ru"]).lang == "ru"
    assert list(tmp_path.glob("langdetect-*.npz")) == [kept]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong shape"])
def test_a_damaged_table_is_built_again_and_replaced(tmp_path: Path, fresh_table: None, damage: str) -> None:
    language.use_cache(tmp_path)
    expected = language._factory()
    (kept,) = tmp_path.glob("langdetect-*.npz")
    if damage == "garbage":
        kept.write_bytes(b"not a numpy archive")
    elif damage == "truncated":
        kept.write_bytes(kept.read_bytes()[: kept.stat().st_size // 2])
    else:
        with np.load(kept) as stored:
            arrays = dict(stored)
        arrays["starts"] = arrays["starts"][:-5]
        with kept.open("wb") as out:
            np.savez(out, **arrays)
    language._factory.cache_clear()
    assert _same(language._factory(), expected)
    language._factory.cache_clear()
    assert _same(language._factory(), expected)  # rewritten whole, and read back


def test_an_unwritable_cache_only_means_building_the_table(tmp_path: Path, fresh_table: None) -> None:
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    language.use_cache(blocked / "summitwatch")
    assert detect_language(SAMPLES["en"]).lang == "en"
    assert list(tmp_path.iterdir()) == [blocked]


def test_the_cached_table_follows_the_profiles(tmp_path: Path) -> None:
    from langdetect.detector_factory import PROFILES_DIRECTORY

    profiles = tmp_path / "profiles"
    profiles.mkdir()
    for name in ("en", "ru"):
        (profiles / name).write_bytes((Path(PROFILES_DIRECTORY) / name).read_bytes())
    files = sorted(profiles.iterdir())
    first = language._table_file(files, tmp_path)
    assert language._table_file(files, tmp_path) == first
    (profiles / "ru").write_bytes((profiles / "ru").read_bytes() + b" ")
    assert language._table_file(files, tmp_path) != first
    assert language._table_file([*files, profiles / "missing"], tmp_path) is None


def test_a_run_keeps_the_table_in_the_encoder_cache_folder(tmp_path: Path) -> None:
    code = (
        "from pipeline.ingest import IngestContext\n"
        "from pipeline.language import detect_language\n"
        "from pipeline.settings import load_settings\n"
        "IngestContext.from_settings(load_settings()).close()\n"
        "print(detect_language('Путин и Си Цзиньпин провели переговоры в Пекине').lang)\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    for _ in range(2):  # the second process reads what the first kept
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        )
        assert done.stdout.strip() == "ru"
    assert len(list((tmp_path / "summitwatch").glob("langdetect-*.npz"))) == 1


def test_a_few_tables_of_other_installs_stay_and_older_ones_go(tmp_path: Path, fresh_table: None) -> None:
    hours_ago = time.time() - 3600
    others = []
    for number in range(language.KEPT_TABLES + 1):
        other = tmp_path / f"langdetect-other{number}.npz"
        other.write_bytes(b"another install's table")
        os.utime(other, (hours_ago + number, hours_ago + number))
        others.append(other)
    blocked = tmp_path / "langdetect-0000-a-folder.npz"  # cannot be unlinked: skipped
    blocked.mkdir()
    os.utime(blocked, (hours_ago + 0.5, hours_ago + 0.5))  # between two files to remove
    language.use_cache(tmp_path)
    assert detect_language(SAMPLES["ru"]).lang == "ru"
    (ours,) = [
        path for path in tmp_path.glob("langdetect-*.npz") if path.is_file() and path.stat().st_size > 1000
    ]
    assert ours.stat().st_mode & 0o777 == 0o644  # readable by the other users of the folder
    left = {path.name for path in tmp_path.iterdir()}
    newest = {other.name for other in others[-(language.KEPT_TABLES - 1) :]}
    assert left == {ours.name, blocked.name, *newest}


# A language langdetect has no profile for, declared by the page or the feed: honoured when
# the text is written in its alphabet and nothing in it says otherwise. (Written for the test.)
SERBIAN_CYRILLIC_LEAD = (
    "Председник Србије састао се јуче у Београду са делегацијом из Кине. Разговарали су о "
    "економској сарадњи и новим инвестицијама у путеве и мостове."
)


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        # Serbian without ђ or ћ: every letter is Macedonian's too, but none only Macedonian writes.
        ("sr", SERBIAN_CYRILLIC_LEAD),
        ("sr", "Путин допутовао у Пекинг у државну посету"),
        # Kazakh with only its і, and with its own letters: langdetect's nearest is Ukrainian.
        ("kk", "Путин Пекинге мемлекеттік сапармен келді"),
        ("kk", "Тоқаев Пекинде Си Цзиньпинмен кездесті"),
        ("tt", "Путин Пекинга дәүләт сәфәре белән килде"),
    ],
)
def test_a_declared_language_without_a_profile_is_honoured_when_its_letters_fit(lang: str, text: str) -> None:
    assert detect_language(text, priors=[lang]).lang == lang
    # The page's own declaration counts the same, with its script subtag, and ahead of a feed's.
    assert detect_language(text, hint=f"{lang}-Cyrl", priors=["ru"]).lang == lang


@pytest.mark.parametrize(
    ("declared", "lang", "text"),
    [
        # Letters Serbian never writes: Russian, Ukrainian, Bulgarian, Macedonian's ѓ ќ ѕ.
        (
            "sr",
            "ru",
            "Президент России прибыл в Пекин с государственным визитом. Переговоры продлятся два дня.",
        ),
        ("sr", "uk", "Президент Росії прибув до Пекіна з державним візитом. Переговори триватимуть два дні."),
        ("sr", "bg", "Президентът на Сърбия се срещна вчера в Белград с делегация от Китай."),
        ("sr", "mk", "Претседателот се сретна со делегацијата. Ќе има нови средби, рече тој."),
        # Macedonian without ѓ ќ ѕ, its words against the declaration.
        (
            "sr",
            "mk",
            "Владата на Северна Македонија ја усвои одлуката. Министерот изјави дека новиот закон ја "
            "подобрува состојбата во земјата и ја зајакнува соработката со Кина и Русија.",
        ),
        # Kazakh's alphabet holds Russian's: a Russian text shows none of Kazakh's own letters.
        (
            "kk",
            "ru",
            "Президент России прибыл в Пекин с государственным визитом. Переговоры продлятся два дня.",
        ),
        ("tt", "ru", "Президент России прибыл в Пекин с государственным визитом."),
        ("kk", "en", "Vladimir Putin arrived in Beijing on Thursday for a two-day state visit."),
    ],
)
def test_a_declared_language_without_a_profile_does_not_outweigh_a_text_in_another(
    declared: str, lang: str, text: str
) -> None:
    assert detect_language(text, priors=[declared]).lang == lang


def test_serbian_cyrillic_without_its_own_letters_is_told_from_macedonian_by_its_words() -> None:
    # Nothing declared: Serbian's "је", "су", "у", "са", "године" against Macedonian's "е",
    # "во", "со", "дека".
    text = (
        SERBIAN_CYRILLIC_LEAD + " Према подацима министарства, трговина две земље је прошле године "
        "порасла за петину."
    )
    assert detect_language(text).lang == "sr"
    assert detect_language(SERBIAN_CYRILLIC_LEAD, hint="sr-Cyrl").lang == "sr"


def test_serbian_in_the_latin_script_is_told_by_its_common_ekavian_words() -> None:
    text = (
        "Predsednik Srbije sastao se u Beogradu sa kineskim ambasadorom. Tom prilikom razgovarali "
        "su o novim investicijama i o poseti kineskog predsednika sledeće nedelje. On je rekao da je "
        "Kina pouzdan partner i da će projekti biti nastavljeni. Ambasador je najavio da će kineske "
        "kompanije uložiti nove milijarde evra u puteve i železnicu."
    )
    assert detect_language(text).lang == "sr"
    croatian = (
        "Predsjednik Hrvatske sastao se u Zagrebu s kineskim veleposlanikom. Tom prilikom razgovarali "
        "su o novim ulaganjima i o posjetu kineskog predsjednika sljedeće nedjelje. On je rekao da je "
        "Kina pouzdan partner i da će projekti biti nastavljeni."
    )
    assert detect_language(croatian).lang == "hr"


def test_a_russian_text_naming_kazakh_people_declared_kazakh_stays_russian() -> None:
    """A Kazakh outlet's Russian edition declares kk: two letters of a Kazakh name in a
    Russian article were taken for Kazakh text."""
    text = (
        "Президент России Владимир Путин провёл переговоры с президентом Казахстана "
        "Қасым-Жомартом Тоқаевым в Астане. Стороны обсудили транзит газа в Китай и "
        "строительство новых железных дорог через казахстанскую границу."
    )
    assert detect_language(text, priors=["kk"]).lang == "ru"
    assert detect_language(text).lang == "ru"
