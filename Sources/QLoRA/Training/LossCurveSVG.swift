import Foundation

/// A loss curve as a self-contained SVG picture (no dependencies, opens in any browser): one
/// polyline per series over the training steps, axes with a few labelled ticks.
public struct LossCurveSVG {
    public struct Series {
        public var name: String
        public var color: String
        public var points: [(step: Int, loss: Double)]
        public init(name: String, color: String, points: [(step: Int, loss: Double)]) {
            self.name = name
            self.color = color
            self.points = points
        }
    }

    public var title: String
    public var series: [Series]
    public var width = 640.0, height = 360.0

    public init(title: String, series: [Series]) {
        self.title = title
        self.series = series
    }

    public func render() -> String {
        let all = series.flatMap(\.points).filter { $0.loss.isFinite }
        let left = 64.0, right = 16.0, top = 40.0, bottom = 48.0
        let plotW = width - left - right, plotH = height - top - bottom
        let minStep = all.map(\.step).min() ?? 0, maxStep = max(all.map(\.step).max() ?? 1, minStep + 1)
        let maxLoss = LossCurveSVG.niceCeiling(all.map(\.loss).max() ?? 1)
        func x(_ s: Int) -> Double { left + plotW * Double(s - minStep) / Double(maxStep - minStep) }
        func y(_ l: Double) -> Double { top + plotH * (1 - min(max(l, 0), maxLoss) / maxLoss) }
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(f(width / 2))" y="22" text-anchor="middle" font-size="15">\(LossCurveSVG.escape(title))</text>

            """
        for i in 0...4 {
            let value = maxLoss * Double(i) / 4, yy = y(value)
            svg += "<line x1=\"\(f(left))\" y1=\"\(f(yy))\" x2=\"\(f(width - right))\" y2=\"\(f(yy))\" stroke=\"#ddd\"/>\n"
            svg += "<text x=\"\(f(left - 6))\" y=\"\(f(yy + 4))\" text-anchor=\"end\">\(LossCurveSVG.label(value))</text>\n"
        }
        for i in 0...4 {
            let step = minStep + (maxStep - minStep) * i / 4, xx = x(step)
            svg += "<text x=\"\(f(xx))\" y=\"\(f(height - bottom + 18))\" text-anchor=\"middle\">\(step)</text>\n"
        }
        svg += "<line x1=\"\(f(left))\" y1=\"\(f(top + plotH))\" x2=\"\(f(width - right))\" y2=\"\(f(top + plotH))\" stroke=\"black\"/>\n"
        svg += "<line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(top + plotH))\" stroke=\"black\"/>\n"
        svg += "<text x=\"\(f(left + plotW / 2))\" y=\"\(f(height - 10))\" text-anchor=\"middle\">step</text>\n"
        svg += "<text x=\"16\" y=\"\(f(top + plotH / 2))\" text-anchor=\"middle\" transform=\"rotate(-90 16 \(f(top + plotH / 2)))\">loss</text>\n"
        for (k, s) in series.enumerated() {
            let pts = s.points.filter { $0.loss.isFinite }.map { "\(f(x($0.step))),\(f(y($0.loss)))" }.joined(separator: " ")
            svg += "<polyline fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"2\" points=\"\(pts)\"/>\n"
            let ly = top + 14 + Double(k) * 16
            svg += "<line x1=\"\(f(width - right - 120))\" y1=\"\(f(ly - 4))\" x2=\"\(f(width - right - 100))\" y2=\"\(f(ly - 4))\" stroke=\"\(s.color)\" stroke-width=\"2\"/>\n"
            svg += "<text x=\"\(f(width - right - 94))\" y=\"\(f(ly))\">\(LossCurveSVG.escape(s.name))</text>\n"
        }
        return svg + "</svg>\n"
    }

    /// Writes the picture atomically (temporary sibling, then rename).
    public func write(to url: URL) throws {
        do { try Data(render().utf8).write(to: url, options: .atomic) } catch {
            throw QLoraError.io(file: url.path, reason: "cannot write the loss curve: \(error.localizedDescription)")
        }
    }

    /// The smallest of 1, 2, 2.5, 5 × 10^k that is >= v (a round top for the loss axis).
    static func niceCeiling(_ v: Double) -> Double {
        guard v.isFinite, v > 0 else { return 1 }
        let p = pow(10, floor(log10(v)))
        for m in [1.0, 2.0, 2.5, 5.0, 10.0] where m * p >= v { return m * p }
        return 10 * p
    }

    static func label(_ v: Double) -> String { v == v.rounded() ? String(Int(v)) : String(format: "%g", v) }
    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
    private func f(_ v: Double) -> String { String(format: "%.1f", v) }
}
