import Foundation
import XCTest
@testable import QLoRA

/// The Jinja chat-template interpreter and the chat label mask against transformers:
/// ../shared/reference/smollm2/chat/conversations.json (rendered text, ids, offsets, labels of
/// SmolLM2's template) and Tests/Fixtures/chat/*.json (Llama-3, Llama-3.2, Llama-2, Mixtral,
/// Mistral-Nemo and Qwen2.5 templates rendered once by transformers' render_jinja_template, see
/// make_fixtures.py), plus jinja2 details and errors.
final class ChatTemplateTests: XCTestCase {
    static let fixtures = Reference.projectRoot.appendingPathComponent("Tests/Fixtures/chat")

    func json(_ url: URL) throws -> JSONValue {
        try JSONValue.parse([UInt8](try Data(contentsOf: url)), file: url.path, field: "(root)")
    }

    func ints(_ v: JSONValue?) -> [Int] {
        guard case .array(let a)? = v else { return [] }
        return a.map { if case .int(let i) = $0 { return i } else { return Int.min } }
    }

    func messages(_ v: JSONValue?) -> [ChatMessage] {
        guard case .array(let a)? = v else { return [] }
        return a.map {
            guard case .string(let r)? = $0["role"], case .string(let c)? = $0["content"] else { return ChatMessage(role: "?", content: "?") }
            return ChatMessage(role: r, content: c)
        }
    }

    func checkSmolLM2Conversations(_ t: BPETokenizer, file: StaticString = #filePath, line: UInt = #line) throws {
        guard case .array(let cases) = try json(Reference.url("smollm2/chat/conversations.json")) else { return XCTFail("not an array") }
        XCTAssertEqual(cases.count, 12, file: file, line: line)
        var straddling = 0
        for c in cases {
            guard case .string(let name)? = c["name"], case .bool(let gen)? = c["add_generation_prompt"],
                  case .string(let rendered)? = c["rendered"] else { XCTFail("bad case"); continue }
            let e = try t.encodeChat(messages(c["messages"]), addGenerationPrompt: gen)
            XCTAssertEqual(e.text, rendered, name, file: file, line: line)
            XCTAssertEqual(e.ids, ints(c["ids"]), name, file: file, line: line)
            XCTAssertEqual(e.labels, ints(c["labels"]), name, file: file, line: line)
            guard case .array(let offs)? = c["offsets"], case .array(let spans)? = c["assistant_char_spans"] else { XCTFail(name); continue }
            XCTAssertEqual(e.offsets.map { [$0.lowerBound, $0.upperBound] }, offs.map { ints($0) }, name, file: file, line: line)
            XCTAssertEqual(e.assistantSpans.map { [$0.lowerBound, $0.upperBound] }, spans.map { ints($0) }, name, file: file, line: line)
            let straddle = ints(c["straddling_positions"])
            for p in straddle { XCTAssertNotEqual(e.labels[p], -100, "\(name): straddling token \(p) is trained") }
            straddling += straddle.count
            let all = try t.encodeChat(messages(c["messages"]), addGenerationPrompt: gen, maskPrompt: false)
            XCTAssertEqual(all.labels, all.ids)
        }
        XCTAssertEqual(straddling, 1, file: file, line: line)
    }

    func testSmolLM2ConversationsFromTokenizerJSON() throws {
        try checkSmolLM2Conversations(try TokenizerTests.tokenizer.get())
    }

    func testSmolLM2ConversationsFromGGUF() throws {
        try checkSmolLM2Conversations(try GGUFTokenizerTests.ggufTokenizer())
    }

    func testOffsetsMatchReferenceOnHardStrings() throws {
        // Offsets must tile the text (apart from dropped bytes) and each token's bytes must
        // decode from the span it claims.
        let t = try TokenizerTests.tokenizer.get()
        for c in try GGUFTokenizerTests.encodings() {
            guard case .string(let text)? = c["text"] else { continue }
            let (ids, offsets) = t.encodeWithOffsets(text)
            XCTAssertEqual(ids, t.encode(text), text.debugDescription)
            XCTAssertEqual(ids.count, offsets.count)
            var last = 0
            for r in offsets {
                XCTAssertGreaterThanOrEqual(r.lowerBound, last - 1, text.debugDescription)  // a split character is shared
                last = r.upperBound
            }
            XCTAssertLessThanOrEqual(last, text.unicodeScalars.count)
        }
        let (ids, offsets) = t.encodeWithOffsets("Hi <|im_end|> é😀")
        XCTAssertEqual(ids.count, offsets.count)
        XCTAssertEqual(offsets[0], 0..<2)
        XCTAssertEqual(offsets[2], 3..<13)  // the special token
    }

    func testFixtureTemplatesRenderAsTransformers() throws {
        var rendered = 0, errors = 0
        for name in ["llama3", "llama3.2", "llama2", "mixtral", "mistral-nemo", "qwen2.5"] {
            let doc = try json(ChatTemplateTests.fixtures.appendingPathComponent("\(name).json"))
            guard case .string(let file)? = doc["template_file"], case .array(let cases)? = doc["cases"] else { XCTFail(name); continue }
            let source = try String(contentsOf: ChatTemplateTests.fixtures.appendingPathComponent(file), encoding: .utf8)
            let template = try ChatTemplate(source)
            for c in cases {
                guard case .string(let caseName)? = c["name"], case .bool(let gen)? = c["add_generation_prompt"],
                      let msgs = c["messages"], case .object(let vars)? = c["variables"] else { XCTFail(name); continue }
                var tokens: [String: String] = [:]
                var extra: [String: JSONValue] = [:]
                for (k, v) in vars { if case .string(let s) = v { tokens[k] = s } else { extra[k] = v } }
                let what = "\(name) \(caseName) generation_prompt=\(gen)"
                if case .string(let expected)? = c["rendered"] {
                    XCTAssertEqual(try template.render(messagesJSON: msgs, addGenerationPrompt: gen, specialTokens: tokens, extra: extra),
                                   expected, what)
                    rendered += 1
                } else if case .string(let err)? = c["error"] {
                    let message = err.replacingOccurrences(of: "TemplateError: ", with: "")
                    XCTAssertThrowsError(try template.render(messagesJSON: msgs, addGenerationPrompt: gen, specialTokens: tokens, extra: extra), what) { e in
                        XCTAssertTrue("\(e)".contains(message), "\(what): \(e)")
                    }
                    errors += 1
                }
            }
        }
        XCTAssertEqual(rendered, 56)
        XCTAssertEqual(errors, 8)
    }

    func render(_ source: String, _ vars: [String: JSONValue] = [:], messages: [ChatMessage] = []) throws -> String {
        try ChatTemplate(source).render(messages, addGenerationPrompt: false, extra: vars)
    }

    /// jinja2 3.1 behaviour with trim_blocks + lstrip_blocks (outputs checked with jinja2 itself).
    func testJinjaSemantics() throws {
        XCTAssertEqual(try render("a\n  {% if true %}\n  x\n  {% endif %}\nb"), "a\n  x\nb")
        XCTAssertEqual(try render("{{ 'a' }}  \n  {{- 'b' -}}  \n c"), "abc")
        XCTAssertEqual(try render("  {%+ if true %}x{% endif %}"), "  x")
        XCTAssertEqual(try render("{% if true +%}\nx{% endif %}"), "\nx")
        XCTAssertEqual(try render("a {# c #}\nb\n"), "a b")  // trailing newline dropped
        XCTAssertEqual(try render("{% for x in [1,2,3] %}{{ loop.index }}{{ loop.first }}{{ loop.last }}{{ loop.revindex0 }},{% endfor %}"),
                       "1TrueFalse2,2FalseFalse1,3FalseTrue0,")
        XCTAssertEqual(try render("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}"), "1")
        XCTAssertEqual(try render("{% set ns = namespace(x=1) %}{% for i in [1] %}{% set ns.x = 2 %}{% endfor %}{{ ns.x }}"), "2")
        XCTAssertEqual(try render("{% for i in range(5) if i is odd %}{{ i }}{% else %}none{% endfor %}"), "13")
        XCTAssertEqual(try render("{% for i in [] %}{{ i }}{% else %}none{% endfor %}"), "none")
        XCTAssertEqual(try render("{% for i in range(9) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}"), "013")
        XCTAssertEqual(try render("{{ [1, 'a', none, true, 1.5, {'k': [2]}] }}"), "[1, 'a', None, True, 1.5, {'k': [2]}]")
        XCTAssertEqual(try render("{{ {'a': 'é\"', 'b': [1, 2.0, none]} | tojson }}"), "{\"a\": \"é\\\"\", \"b\": [1, 2.0, null]}")
        XCTAssertEqual(try render("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1 ~ 2 }} {{ 'ab' * 2 }}"), "3 -4 2 3.5 1024 12 abab")
        XCTAssertEqual(try render("{{ 'a' in 'cat' }} {{ 3 not in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 1 < 2 < 3 }} {{ 1 == 1.0 }}"), "True True True True True")
        XCTAssertEqual(try render("{{ '  x y  '.strip() }}|{{ ' x ' | trim }}|{{ 'a,b'.split(',') }}|{{ 'Hi'.upper() }}|{{ 'hello world'.title() }}"),
                       "x y|x|['a', 'b']|HI|Hello World")
        XCTAssertEqual(try render("{{ 'abcdef'[1:4] }} {{ [1,2,3,4][::-1] }} {{ [1,2,3][-1] }} {{ 'abc'[-2:] }}"), "bcd [4, 3, 2, 1] 3 bc")
        XCTAssertEqual(try render("{{ x | default('d') }} {{ x is defined }} {{ none is none }} {{ 'a' if false else 'b' }}{{ 'c' if false }}"), "d False True b")
        XCTAssertEqual(try render("{{ m | selectattr('role', 'equalto', 'user') | map(attribute='content') | join('+') }}",
                                  ["m": .array([.object([("role", .string("user")), ("content", .string("a"))]),
                                                .object([("role", .string("bot")), ("content", .string("b"))]),
                                                .object([("role", .string("user")), ("content", .string("c"))])])]), "a+c")
        XCTAssertEqual(try render("{% macro f(a, b='B') %}<{{ a }}{{ b }}>{% endmacro %}{{ f(1) }}{{ f(1, b=2) }}"), "<1B><12>")
        XCTAssertEqual(try render("{{ messages[0].content }}{{ messages[0]['role'] }}", messages: [ChatMessage(role: "user", content: "hi")]), "hiuser")
        XCTAssertEqual(try render("{% set a, b = [1, 2] %}{{ b }}{{ a }}"), "21")
        XCTAssertEqual(try render("{% raw %}{{ x }}{% endraw %}"), "{{ x }}")
        XCTAssertEqual(try render("a {%- raw -%} {{ x }} {%- endraw %}\nb"), "a{{ x }}b")
        XCTAssertEqual(try render("{{ 1e-5 }} {{ 0.1 + 0.2 }} {{ 1e16 }} {{ 3.0 }}"), "1e-05 0.30000000000000004 1e+16 3.0")
    }

    func testUnsupportedConstructsAndErrorsNamePosition() throws {
        func expect(_ source: String, _ needles: [String], line: UInt = #line) {
            XCTAssertThrowsError(try render(source), line: line) { e in
                for n in needles { XCTAssertTrue("\(e)".contains(n), "\(e) lacks \(n)", line: line) }
            }
        }
        expect("ab\n  {% include 'x' %}", ["2:6", "include"])
        expect("{{ x | frobnicate }}", ["1:6", "frobnicate"])
        expect("{% if x is prime %}{% endif %}", ["1:9", "prime"])
        expect("{% if true %}", ["1:4", "never closed"])
        expect("{{ 'a' + 1 }}", ["1:8", "'+'"])
        expect("{{ raise_exception('bad roles') }}", ["bad roles"])
        expect("{{ x.y }}", ["1:5", "undefined"])
        expect("{{ 'unclosed }}", ["1:4", "never closed"])
        expect("{% for x in [1] recursive %}{% endfor %}", ["recursive"])
        expect("{{ [1].append(2) }}", ["append"])
        expect("{% endfor %}", ["endfor"])
        // Hostile templates are errors, not crashes or unbounded allocations.
        expect(String(repeating: "{% if true %}", count: 5000), ["nested more than 200"])
        expect("{{ " + String(repeating: "(", count: 5000) + "1" + String(repeating: ")", count: 5000) + " }}", ["nested more than 200"])
        expect("{{ " + String(repeating: "not ", count: 5000) + "x }}", ["nested more than 200"])
        expect("{{ " + String(repeating: "-", count: 5000) + "1 }}", ["nested more than 200"])
        expect("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", ["macro 'f'", "100 deep"])
        expect("{{ 'ab' * 1000000000000 }}", ["'*'"])
        expect("{% for i in range(10000000000000) %}{% endfor %}", ["range()"])
        expect("{% for i in range(-9223372036854775807, 9223372036854775807) %}{% endfor %}", ["range()"])
        expect("{{ (-9223372036854775807 - 1) // -1 }}", ["overflow"])
        expect("{{ -(-9223372036854775807 - 1) }}", ["overflow"])
        expect("{{ 9223372036854775807 + 1 }}", ["overflow", "'+'"])
        expect("{{ 3 ** 100 }}", ["overflow", "'**'"])
        XCTAssertEqual(try render("{{ 1e300 | int }} {{ 1 ** 100000000000 }} {{ -9223372036854775807 - 1 }} {{ (-1) ** 3 }} {{ 2 ** 62 }}"),
                       "0 1 -9223372036854775808 -1 4611686018427387904")
    }
}
