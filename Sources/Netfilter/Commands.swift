import Foundation

/// Runs an iptables tool and collects its output (stdin optional).
/// Written by one thread, read by another only after a semaphore hands it over.
final class DataBox: @unchecked Sendable {
    var data = Data()
}

enum Command {
    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func run(_ argv: [String], input: [UInt8]? = nil) throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = argv
        let out = Pipe()
        let err = Pipe()
        let inp = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input == nil ? FileHandle.nullDevice : inp
        try process.run()
        if let input {
            // Write from another thread so a large payload cannot deadlock against a full stdout pipe.
            let writer = inp.fileHandleForWriting
            let thread = Thread {
                writer.write(Data(input))
                try? writer.close()
            }
            thread.start()
        }
        // stderr is drained concurrently so neither pipe can fill up and stall the child.
        let errBox = DataBox()
        let done = DispatchSemaphore(value: 0)
        let errHandle = err.fileHandleForReading
        DispatchQueue.global().async {
            errBox.data = errHandle.readDataToEndOfFile()
            done.signal()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        done.wait()
        return Output(
            status: process.terminationStatus,
            stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errBox.data, as: UTF8.self))
    }
}
