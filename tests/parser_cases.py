"""Small documents where feedparser and feedparser-rs may read an entry differently: what a feed does
with guids, links, dates, titles, descriptions, content, namespaces and element case. Written for
this project by a differential audit of the fast parser; every one must be declined by the fast
path or parsed exactly like feedparser (tests/test_fastparse.py)."""

from __future__ import annotations

# fmt: off
RSS = ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
       'xmlns:content="http://purl.org/rss/1.0/modules/content/" xmlns:dc="http://purl.org/dc/elements/1.1/" '
       'xmlns:atom="http://www.w3.org/2005/Atom" xmlns:media="http://search.yahoo.com/mrss/" '
       'xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd">'
       '<channel><title>T</title><link>https://site.example/</link>{items}</channel></rss>')
ATOM = ('<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom" '
        'xmlns:media="http://search.yahoo.com/mrss/"><title>A</title><id>urn:a</id>'
        '<updated>2025-10-20T10:00:00Z</updated><link href="https://site.example/"/>{items}</feed>')
RDF = ('<?xml version="1.0" encoding="utf-8"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
       'xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/" '
       'xmlns:content="http://purl.org/rss/1.0/modules/content/">'
       '<channel rdf:about="https://rdf.example/"><title>R</title><link>https://rdf.example/</link></channel>{items}</rdf:RDF>')
CASES = {
 "rss-guid-whitespace": (RSS, "<item><title>a</title><guid isPermaLink='false'>\n  id-1 \n</guid></item>"),
 "rss-guid-permalink-default": (RSS, "<item><title>a</title><guid>https://site.example/a?utm_source=x</guid></item>"),
 "rss-cdata-title": (RSS, "<item><title><![CDATA[Bund &amp; <b>Länder</b>]]></title><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-entity-title": (RSS, "<item><title>Bund &amp;amp; L&#228;nder &#x2019;x&#8217;</title><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-title-lt": (RSS, "<item><title>3 &lt; 4 &amp;&amp; 5 &gt; 2 &lt;b&gt;fett&lt;/b&gt;</title><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-desc-html-escaped": (RSS, "<item><title>a</title><description>&lt;p&gt;Hallo &amp;amp; &lt;a href='x'&gt;Welt&lt;/a&gt;&lt;/p&gt;</description><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-itunes-summary": (RSS, "<item><title>a</title><description>kurz</description><itunes:summary>lang lang lang lang</itunes:summary><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-media-description": (RSS, "<item><title>a</title><media:description>medien text</media:description><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-media-title": (RSS, "<item><media:title>MT</media:title><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-dc-date-only": (RSS, "<item><title>a</title><dc:date>2025-10-20T10:00:00+02:00</dc:date><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-pubdate-cest": (RSS, "<item><title>a</title><pubDate>Mon, 20 Oct 2025 10:00:00 CEST</pubDate><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-pubdate-mesz": (RSS, "<item><title>a</title><pubDate>Mon, 20 Oct 2025 10:00:00 MESZ</pubDate><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-pubdate-noseconds": (RSS, "<item><title>a</title><pubDate>Mon, 20 Oct 2025 10:00 +0200</pubDate><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-pubdate-2digit": (RSS, "<item><title>a</title><pubDate>Mon, 20 Oct 25 10:00:00 GMT</pubDate><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-pubdate-iso": (RSS, "<item><title>a</title><pubDate>2025-10-20T10:00:00+02:00</pubDate><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-pubdate-german": (RSS, "<item><title>a</title><pubDate>Mo, 20 Okt 2025 10:00:00 +0200</pubDate><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-pubdate-nodow": (RSS, "<item><title>a</title><pubDate>20 Oct 2025 10:00:00 +0200</pubDate><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-pubdate-EST": (RSS, "<item><title>a</title><pubDate>Mon, 20 Oct 2025 10:00:00 EST</pubDate><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-pubdate-wrongdow": (RSS, "<item><title>a</title><pubDate>Fri, 20 Oct 2025 10:00:00 GMT</pubDate><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-pubdate-lowercase": (RSS, "<item><title>a</title><pubDate>mon, 20 oct 2025 10:00:00 gmt</pubDate><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-pubdate-+02:00": (RSS, "<item><title>a</title><pubDate>Mon, 20 Oct 2025 10:00:00 +02:00</pubDate><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-pubdate-UT": (RSS, "<item><title>a</title><pubDate>Mon, 20 Oct 2025 10:00:00 UT</pubDate><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-pubdate-Z": (RSS, "<item><title>a</title><pubDate>Mon, 20 Oct 2025 10:00:00 Z</pubDate><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-pubdate-none-tz": (RSS, "<item><title>a</title><pubDate>Mon, 20 Oct 2025 10:00:00</pubDate><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-pubdate-empty": (RSS, "<item><title>a</title><pubDate></pubDate><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-pubdate-1970": (RSS, "<item><title>a</title><pubDate>Thu, 01 Jan 1970 00:00:00 GMT</pubDate><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-pubdate-0001": (RSS, "<item><title>a</title><pubDate>Mon, 01 Jan 0001 00:00:00 GMT</pubDate><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-two-links": (RSS, "<item><title>a</title><link>https://site.example/1</link><atom:link href='https://site.example/2' rel='alternate'/><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-atomlink-only": (RSS, "<item><title>a</title><atom:link href='https://site.example/2'/><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-link-whitespace": (RSS, "<item><title>a</title><link>\n   https://site.example/1  \n</link><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-link-uppercase-host": (RSS, "<item><title>a</title><link>https://Site.Example/1</link></item>"),
 "rss-link-amp": (RSS, "<item><title>a</title><link>https://site.example/a?x=1&amp;utm_source=y</link></item>"),
 "rss-link-amp-encoded": (RSS, "<item><title>a</title><link>https://site.example/a?x=1&amp;amp;y=2</link></item>"),
 "rss-link-space": (RSS, "<item><title>a</title><link>https://site.example/a b</link></item>"),
 "rss-link-umlaut": (RSS, "<item><title>a</title><link>https://site.example/straße</link></item>"),
 "rss-link-idn": (RSS, "<item><title>a</title><link>https://müller.example/a</link></item>"),
 "rss-no-guid-comments": (RSS, "<item><title>a</title><comments>https://site.example/c</comments></item>"),
 "rss-enclosure": (RSS, "<item><title>a</title><enclosure url='https://site.example/x.mp3' type='audio/mpeg' length='1'/></item>"),
 "rss-source": (RSS, "<item><title>a</title><source url='https://other.example/rss'>Other</source><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-content-and-desc": (RSS, "<item><title>a</title><description>kurz</description><content:encoded><![CDATA[<p>lang</p>]]></content:encoded><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-two-descriptions": (RSS, "<item><title>a</title><description>eins</description><description>zwei</description><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-two-titles": (RSS, "<item><title>eins</title><title>zwei</title><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-two-guids": (RSS, "<item><title>a</title><guid>g1</guid><guid>g2</guid></item>"),
 "rss-dc-title": (RSS, "<item><dc:title>DC</dc:title><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-dc-description": (RSS, "<item><title>a</title><dc:description>dcdesc</dc:description><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-xhtml-body": (RSS.replace('<rss ', '<rss xmlns:xhtml="http://www.w3.org/1999/xhtml" '), "<item><title>a</title><xhtml:body><xhtml:p>body text</xhtml:p></xhtml:body><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-uppercase-elem": (RSS, "<item><Title>a</Title><Guid>g</Guid></item>"),
 "rss-nested-html-in-desc-raw": (RSS, "<item><title>a</title><description><p>roh <b>html</b></p></description><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-script-in-desc": (RSS, "<item><title>a</title><description>&lt;script&gt;alert(1)&lt;/script&gt;text</description><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-nbsp-char": (RSS, "<item><title>a\u00a0b\u200bc</title><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-crlf": (RSS, "<item><title>a\r\nb</title><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-guid-empty": (RSS, "<item><title>a</title><guid></guid><link>https://site.example/1</link></item>"),
 "rss-guid-ispermalink-relative": (RSS, "<item><title>a</title><guid>123</guid></item>"),
 "rss-guid-permalink-true-rel": (RSS, "<item><title>a</title><guid isPermaLink='true'>abc</guid></item>"),
 "rss-author-email": (RSS, "<item><title>a</title><author>x@y.z (X)</author><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "atom-xhtml-content": (ATOM, "<entry><title>t</title><id>urn:1</id><updated>2025-10-20T10:00:00Z</updated><content type='xhtml'><div xmlns='http://www.w3.org/1999/xhtml'><p>Hallo <b>Welt</b> &amp; mehr</p></div></content></entry>"),
 "atom-text-content-lt": (ATOM, "<entry><title type='text'>3 &lt; 4 &lt;b&gt;</title><id>urn:1</id><updated>2025-10-20T10:00:00Z</updated><content type='text'>a &lt;b&gt;b&lt;/b&gt; c</content></entry>"),
 "atom-html-title": (ATOM, "<entry><title type='html'>&lt;b&gt;Fett&lt;/b&gt; &amp;amp;</title><id>urn:1</id><updated>2025-10-20T10:00:00Z</updated></entry>"),
 "atom-xhtml-title": (ATOM, "<entry><title type='xhtml'><div xmlns='http://www.w3.org/1999/xhtml'>X <i>Y</i></div></title><id>urn:1</id><updated>2025-10-20T10:00:00Z</updated></entry>"),
 "atom-no-rel-links": (ATOM, "<entry><title>t</title><id>urn:1</id><link href='https://site.example/enc.mp3' rel='enclosure'/><link href='https://site.example/a'/><updated>2025-10-20T10:00:00Z</updated></entry>"),
 "atom-self-then-alt": (ATOM, "<entry><title>t</title><id>urn:1</id><link href='https://site.example/self' rel='self'/><link href='https://site.example/a' rel='alternate' type='text/html'/><updated>2025-10-20T10:00:00Z</updated></entry>"),
 "atom-alt-nonhtml": (ATOM, "<entry><title>t</title><id>urn:1</id><link href='https://site.example/a.pdf' rel='alternate' type='application/pdf'/><link href='https://site.example/a' rel='alternate' type='text/html'/><updated>2025-10-20T10:00:00Z</updated></entry>"),
 "atom-no-link-no-id": (ATOM, "<entry><title>t</title><summary>s</summary><updated>2025-10-20T10:00:00Z</updated></entry>"),
 "atom-content-src": (ATOM, "<entry><title>t</title><id>urn:1</id><content src='https://site.example/c' type='text/html'/><updated>2025-10-20T10:00:00Z</updated></entry>"),
 "atom-two-contents": (ATOM, "<entry><title>t</title><id>urn:1</id><content type='html'>eins</content><content type='text'>zwei zwei zwei</content><updated>2025-10-20T10:00:00Z</updated></entry>"),
 "atom-summary-xhtml": (ATOM, "<entry><title>t</title><id>urn:1</id><summary type='xhtml'><div xmlns='http://www.w3.org/1999/xhtml'>S <b>x</b></div></summary><updated>2025-10-20T10:00:00Z</updated></entry>"),
 "atom-prefix-ns": ('<?xml version="1.0" encoding="utf-8"?><a:feed xmlns:a="http://www.w3.org/2005/Atom"><a:title>A</a:title><a:id>urn:a</a:id>{items}</a:feed>', "<a:entry><a:title>t</a:title><a:id>urn:1</a:id><a:updated>2025-10-20T10:00:00Z</a:updated></a:entry>"),
 "atom03": ('<?xml version="1.0" encoding="utf-8"?><feed version="0.3" xmlns="http://purl.org/atom/ns#"><title>A</title>{items}</feed>', "<entry><title>t</title><id>urn:1</id><issued>2025-10-20T10:00:00Z</issued><modified>2025-10-20T10:00:00Z</modified></entry>"),
 "atom-published-only-updated-diff": (ATOM, "<entry><title>t</title><id>urn:1</id><published>2025-10-19T10:00:00+02:00</published><updated>2025-10-20T10:00:00Z</updated></entry>"),
 "atom-date-no-tz": (ATOM, "<entry><title>t</title><id>urn:1</id><updated>2025-10-20T10:00:00</updated></entry>"),
 "atom-date-fraction": (ATOM, "<entry><title>t</title><id>urn:1</id><updated>2025-10-20T10:00:00.123456789Z</updated></entry>"),
 "atom-date-space": (ATOM, "<entry><title>t</title><id>urn:1</id><updated>2025-10-20 10:00:00</updated></entry>"),
 "atom-date-dateonly": (ATOM, "<entry><title>t</title><id>urn:1</id><updated>2025-10-20</updated></entry>"),
 "atom-id-whitespace": (ATOM, "<entry><title>t</title><id>\n urn:1 \n</id><updated>2025-10-20T10:00:00Z</updated></entry>"),
 "atom-media-group": (ATOM, "<entry><title>t</title><id>urn:1</id><media:group><media:description>md</media:description></media:group><updated>2025-10-20T10:00:00Z</updated></entry>"),
 "rdf-no-link": (RDF, "<item rdf:about='https://rdf.example/1'><title>a</title><description>d</description></item>"),
 "rss-two-titles-and-none": (RSS, "<item><title>a</title><title>b</title><guid isPermaLink='false'>urn:g:1</guid></item><item><guid isPermaLink='false'>urn:g:2</guid><description>ohne Titel</description></item>"),
 "rdf-items-and-image": (RDF.replace("</channel>", "<image rdf:resource='https://rdf.example/logo.png'/><items><rdf:Seq><rdf:li rdf:resource='https://rdf.example/1'/></rdf:Seq></items></channel><image rdf:about='https://rdf.example/logo.png'><title>Logo</title><link>https://rdf.example/</link><url>https://rdf.example/logo.png</url></image>"), "<item rdf:about='https://rdf.example/1'><title>a</title><link>https://rdf.example/1</link><description>Text</description></item>"),
 "rdf-content": (RDF, "<item rdf:about='https://rdf.example/1'><title>a</title><link>https://rdf.example/1</link><content:encoded>&lt;p&gt;x&lt;/p&gt;</content:encoded></item>"),
 "rss-item-outside-channel": (RSS.replace("{items}</channel>", "</channel>{items}"), "<item><title>a</title><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-ttl-float": (RSS.replace("<title>T</title>", "<title>T</title><ttl>1.5</ttl>"), "<item><title>a</title><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-ttl-neg": (RSS.replace("<title>T</title>", "<title>T</title><ttl>-5</ttl>"), "<item><title>a</title><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-ttl-big": (RSS.replace("<title>T</title>", "<title>T</title><ttl>1e309</ttl>"), "<item><title>a</title><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-ttl-nan": (RSS.replace("<title>T</title>", "<title>T</title><ttl>nan</ttl>"), "<item><title>a</title><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-channel-title-html": (RSS.replace("<title>T</title>", "<title>T &amp;amp; &lt;b&gt;U&lt;/b&gt;</title>"), "<item><title>a</title><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-comment-in-title": (RSS, "<item><title>a<!-- x -->b</title><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-pi-in-item": (RSS, "<item><?foo bar?><title>ab</title><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-unknown-ns-elem": (RSS.replace('<rss ', '<rss xmlns:x="urn:x" '), "<item><title>a</title><x:title>other</x:title><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-link-javascript": (RSS, "<item><title>a</title><link>javascript:alert(1)</link></item>"),
 "rss-link-mailto": (RSS, "<item><title>a</title><link>mailto:x@y.z</link></item>"),
 "rss-link-protocol-relative": (RSS, "<item><title>a</title><link>//site.example/p</link></item>"),
 "rss-link-backslash": (RSS, "<item><title>a</title><link>https://site.example\\evil/p</link></item>"),
 "rss-version-missing": ('<?xml version="1.0" encoding="utf-8"?><rss><channel><title>T</title>{items}</channel></rss>', "<item><title>a</title><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-version-2.01": ('<?xml version="1.0" encoding="utf-8"?><rss version="2.01"><channel><title>T</title>{items}</channel></rss>', "<item><title>a</title><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-wrong-default-ns": ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0" xmlns="http://backend.userland.com/rss2"><channel><title>T</title>{items}</channel></rss>', "<item><title>a</title><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-latin1-umlaut": ('<?xml version="1.0" encoding="iso-8859-1"?><rss version="2.0"><channel><title>T</title>{items}</channel></rss>', "<item><title>Grüße aus Köln €</title><guid isPermaLink='false'>urn:g:1</guid></item>"),
 "rss-win1252-quotes": ('<?xml version="1.0" encoding="windows-1252"?><rss version="2.0"><channel><title>T</title>{items}</channel></rss>', "<item><title>„Zitat“ – €</title><guid isPermaLink='false'>urn:g:1</guid></item>"),
}
# fmt: on


def documents() -> list[tuple[str, bytes, str]]:
    """(name, body, content type) of every case."""
    out = []
    for name, (template, items) in CASES.items():
        doc = template.replace("{items}", items)
        if "latin1" in name:
            out.append((name, doc.encode("latin-1", "replace"), "application/rss+xml"))
        elif "win1252" in name:
            out.append((name, doc.encode("cp1252"), "application/rss+xml"))
        else:
            media = "application/atom+xml" if name.startswith("atom") else "application/rss+xml"
            out.append((name, doc.encode("utf-8"), media + ("" if "nocs" in name else "; charset=utf-8")))
    return out
