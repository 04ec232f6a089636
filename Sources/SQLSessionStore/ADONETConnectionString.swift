/// ADO.NET connection-string syntax (`key=value;…`, values optionally quoted with `'` or `"`,
/// a doubled quote inside quotes standing for one), as `DbConnectionStringBuilder` reads it.
enum ADONETConnectionString {
    struct SyntaxError: Error {
        /// ADO.NET's wording.
        var message: String
    }

    /// The options, keys lower-cased and trimmed; the last occurrence of a key wins.
    static func parse(_ text: String) throws(SyntaxError) -> [String: String] {
        var options: [String: String] = [:]
        let characters = Array(text)
        var index = 0
        func fail(at start: Int) -> SyntaxError {
            SyntaxError(message: "Format of the initialization string does not conform to specification starting at index \(start).")
        }
        while index < characters.count {
            let start = index
            while index < characters.count, characters[index] == " " || characters[index] == ";" { index += 1 }
            if index == characters.count { break }
            var key = ""
            while index < characters.count, characters[index] != "=" {
                if characters[index] == ";" { throw fail(at: start) }
                key.append(characters[index])
                index += 1
            }
            guard index < characters.count else { throw fail(at: start) }
            index += 1
            key = trimmed(key).lowercased()
            guard !key.isEmpty else { throw fail(at: start) }
            while index < characters.count, characters[index] == " " { index += 1 }
            var value = ""
            if index < characters.count, characters[index] == "\"" || characters[index] == "'" {
                let quote = characters[index]
                index += 1
                var closed = false
                while index < characters.count {
                    if characters[index] == quote {
                        if index + 1 < characters.count, characters[index + 1] == quote {
                            value.append(quote)
                            index += 2
                            continue
                        }
                        index += 1
                        closed = true
                        break
                    }
                    value.append(characters[index])
                    index += 1
                }
                guard closed else { throw fail(at: start) }
                while index < characters.count, characters[index] == " " { index += 1 }
                guard index == characters.count || characters[index] == ";" else { throw fail(at: start) }
            } else {
                while index < characters.count, characters[index] != ";" {
                    value.append(characters[index])
                    index += 1
                }
                value = trimmed(value)
            }
            options[key] = value
        }
        return options
    }

    private static func trimmed(_ text: String) -> String {
        String(text.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
