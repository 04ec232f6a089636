import Foundation

/// The JSON of a status page: keys sorted and pretty-printed, so that a person reads it as
/// easily as a tool; one line feed at the end.
package enum StatusJSON {
    package static func encode(_ value: some Encodable) throws(EncodingError) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do {
            return Array(try encoder.encode(value)) + [10]
        } catch let error as EncodingError {
            throw error
        } catch {
            throw EncodingError.invalidValue(value, .init(codingPath: [], debugDescription: "\(error)"))
        }
    }
}
