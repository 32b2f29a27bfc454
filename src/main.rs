fn main() {
    println!("runnerhub");
}
