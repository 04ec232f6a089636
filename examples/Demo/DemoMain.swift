import DemoSite
import SessionHostCLI

/// `demo serve …`: the demo site behind nginx (scripts/demo).
@main
struct DemoMain {
    static func main() async {
        await SessionHostMain.run(routes: DemoSite.routes(), sessions: DemoSite.sessions, abstract: "The SessionHost demo site.")
    }
}
